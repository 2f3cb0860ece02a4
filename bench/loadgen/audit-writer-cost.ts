// The audit writer on its own, for bench:audit: how much CPU one record costs when the
// writer is fed as the daemon feeds it (many appends at once, group commit), outside any
// server. The events are copies of a real record the daemon wrote in the same run, so the
// canonical JSON and hash cover the same fields.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AuditWriter, SoftwareAuditSigner, type AuditEvent } from '../../src/audit/index.js';

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
  /** CPU of this process (all threads, libuv's fs pool included) per record. */
  cpuMicrosPerRecord: number;
  fsyncs: number;
}

/** Appends `bursts` x `burst` copies of `event` (each burst at once, after one untimed) and measures. */
export async function auditWriterCost(
  dir: string,
  event: AuditEvent,
  burst: number,
  bursts: number,
): Promise<WriterCost> {
  const auditDir = mkdtempSync(join(dir, 'writer-'));
  // The daemon's defaults (audit-fs O_DSYNC, no group-commit delay), a software signer.
  const w = await AuditWriter.open({ dir: auditDir, signer: new SoftwareAuditSigner() });
  try {
    // One untimed burst first: the writer's code is cold in this process.
    await Promise.all(
      Array.from({ length: burst }, (_, i) => w.append({ ...event, requestId: `warm-${i}` } as AuditEvent)),
    );
    const fsyncs0 = w.stats().fsyncs;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let b = 0; b < bursts; b++) {
      await Promise.all(
        Array.from({ length: burst }, (_, i) =>
          w.append({ ...event, requestId: `bench-${b}-${i}` } as AuditEvent),
        ),
      );
    }
    const c = process.cpuUsage(c0);
    const records = burst * bursts;
    return {
      op: String((event as unknown as { op?: unknown }).op ?? event.type),
      bytes: Buffer.byteLength(JSON.stringify(event)),
      records,
      burst,
      wallMs: performance.now() - t0,
      cpuMicrosPerRecord: (c.user + c.system) / records,
      fsyncs: w.stats().fsyncs - fsyncs0,
    };
  } finally {
    await w.close();
    rmSync(auditDir, { recursive: true, force: true });
  }
}
