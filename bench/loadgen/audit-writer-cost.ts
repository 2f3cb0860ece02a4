// The audit writer on its own, for bench:audit: how much CPU one record costs when the
// writer is fed as the daemon feeds it (many appends at once, group commit), outside any
// server. The events are copies of a real record the daemon wrote in the same run, so the
// canonical JSON and hash cover the same fields.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AuditWriter, SoftwareAuditSigner, type AuditEvent } from '../../src/audit/index.js';
import { mainThreadCpuSeconds } from '../lib/procstat.js';

/** The body of the last `request` record of `op` in the audit directory (chain fields removed). */
export function sampleRequestEvent(auditDir: string, op: string): AuditEvent | null {
  const files = readdirSync(auditDir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort();
  for (const f of files.reverse()) {
    const lines = readFileSync(join(auditDir, f), 'utf8').trim().split('\n').reverse();
    for (const line of lines) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (rec.type !== 'request' || rec.op !== op) continue;
      for (const k of ['seq', 'ts', 'prev', 'hash']) delete rec[k];
      return rec as unknown as AuditEvent;
    }
  }
  return null;
}

export interface WriterCost {
  /** The sampled record's operation (a batch record covers all its items). */
  op: string;
  /** Its canonical size, roughly: JSON bytes of the event. */
  bytes: number;
  records: number;
  burst: number;
  wallMs: number;
  /** CPU of this process (all threads: the writer's helper thread and libuv's pool included) per record. */
  cpuMicrosPerRecord: number;
  /** CPU of the event-loop thread alone per record: what the daemon's bottleneck pays. */
  jsMicrosPerRecord: number;
  /** Batches the writer's helper thread chained and wrote, of all batches measured. */
  offloadedBatches: number;
  batches: number;
  fsyncs: number;
  /** Mean time per durable batch write, from the writer's own stats. */
  writeMsPerBatch: number;
}

/** Appends `bursts` x `burst` copies of `event` (each burst at once, after as many untimed) and measures. */
export async function auditWriterCost(
  dir: string,
  event: AuditEvent,
  burst: number,
  bursts: number,
  reserveBytes?: number,
): Promise<WriterCost> {
  const auditDir = mkdtempSync(join(dir, 'writer-'));
  // The daemon's defaults (audit-fs O_DSYNC, no group-commit delay, reserved space unless
  // `reserveBytes` says otherwise), a software signer.
  const w = await AuditWriter.open({
    dir: auditDir,
    signer: new SoftwareAuditSigner(),
    ...(reserveBytes !== undefined ? { reserveBytes } : {}),
  });
  try {
    // The helper thread first, then untimed bursts: the writer's code is cold in this process.
    await w.offloadReady();
    for (let b = 0; b < bursts; b++) {
      await Promise.all(
        Array.from({ length: burst }, (_, i) =>
          w.append({ ...event, requestId: `warm-${b}-${i}` } as AuditEvent),
        ),
      );
    }
    const s0 = w.stats();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const js0 = mainThreadCpuSeconds();
    for (let b = 0; b < bursts; b++) {
      await Promise.all(
        Array.from({ length: burst }, (_, i) =>
          w.append({ ...event, requestId: `bench-${b}-${i}` } as AuditEvent),
        ),
      );
    }
    const js = mainThreadCpuSeconds() - js0;
    const c = process.cpuUsage(c0);
    const s1 = w.stats();
    const records = burst * bursts;
    return {
      op: String((event as unknown as { op?: unknown }).op ?? event.type),
      bytes: Buffer.byteLength(JSON.stringify(event)),
      records,
      burst,
      wallMs: performance.now() - t0,
      cpuMicrosPerRecord: (c.user + c.system) / records,
      jsMicrosPerRecord: (js * 1e6) / records,
      offloadedBatches: s1.offloadedBatches - s0.offloadedBatches,
      batches: s1.batches - s0.batches,
      fsyncs: s1.fsyncs - s0.fsyncs,
      writeMsPerBatch:
        (s1.totalWriteLatencyMs - s0.totalWriteLatencyMs) / Math.max(1, s1.batches - s0.batches),
    };
  } finally {
    await w.close();
    rmSync(auditDir, { recursive: true, force: true });
  }
}
