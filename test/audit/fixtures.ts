// Shared helpers for the audit tests: real temp directories, a software signer, and
// tools to read and tamper with audit files the way an attacker with disk access would.

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordHash, canonicalJson } from '../../src/audit/canonical.js';
import type { AuditRecord, RequestEvent } from '../../src/audit/record.js';
import { SoftwareAuditSigner } from '../../src/audit/software-signer.js';
import { AuditWriter, type AuditWriterOptions } from '../../src/audit/writer.js';

export const signer = new SoftwareAuditSigner();

export function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function request(i: number, extra: Partial<RequestEvent> = {}): RequestEvent {
  return {
    type: 'request',
    plane: 'data',
    identity: { fingerprint: 'ab'.repeat(32), san: `spiffe://example.org/svc-${i % 3}` },
    op: 'unwrapKey',
    key: { name: `key-${i % 2}`, version: 1 },
    decision: { allowed: true, rule: 'grant:svc' },
    result: { code: 'OK' },
    latencyMs: 1.5,
    peer: '127.0.0.1:5000',
    requestId: `req-${i}`,
    ...extra,
  };
}

export async function openWriter(dir: string, opts: Partial<AuditWriterOptions> = {}): Promise<AuditWriter> {
  return AuditWriter.open({ dir, signer, probeIntervalMs: 20, ...opts });
}

export function auditFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith('audit-'))
    .sort();
}

export function readLines(dir: string, file: string): string[] {
  const text = readFileSync(join(dir, file), 'utf8');
  return text.split('\n').filter((l, i, a) => l !== '' || i < a.length - 1);
}

export function readRecords(dir: string): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const f of auditFiles(dir)) {
    for (const l of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (l.trim()) {
        try {
          out.push(JSON.parse(l) as AuditRecord);
        } catch {
          // partial line
        }
      }
    }
  }
  return out;
}

export function writeLines(dir: string, file: string, lines: string[]): void {
  writeFileSync(join(dir, file), lines.map((l) => l + '\n').join(''));
}

/** Recompute every hash and prev link in order, as an attacker would after an edit. */
export function rehashChain(dir: string): void {
  let prev: string | null = null;
  for (const f of auditFiles(dir)) {
    const lines = readLines(dir, f).map((l) => {
      const r = JSON.parse(l) as AuditRecord;
      if (prev !== null) r.prev = prev;
      if (r.type === 'checkpoint' && prev !== null) (r.head as { hash: string }).hash = prev;
      r.hash = recordHash(r);
      prev = r.hash;
      return canonicalJson(r);
    });
    writeLines(dir, f, lines);
  }
}
