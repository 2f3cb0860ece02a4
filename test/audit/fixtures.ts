// Shared helpers for the audit tests: real temp directories, a software signer, and
// tools to read and tamper with audit files the way an attacker with disk access would.

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordHash, canonicalJson } from '../../src/audit/canonical.js';
import type { AuditRecord, RequestEvent } from '../../src/audit/record.js';
import { SoftwareAuditSigner } from '../../src/audit/software-signer.js';
import { AuditWriter, type AuditWriterOptions } from '../../src/audit/writer.js';
import { nodeAuditFs, type AuditFs } from '../../src/audit/audit-fs.js';

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

/** A file's text up to its first NUL byte: the zero-filled space after it is not data (files.ts). */
export function fileText(dir: string, file: string): string {
  const data = readFileSync(join(dir, file));
  const nul = data.indexOf(0);
  return data.subarray(0, nul < 0 ? data.length : nul).toString('utf8');
}

export function readLines(dir: string, file: string): string[] {
  const text = fileText(dir, file);
  return text.split('\n').filter((l, i, a) => l !== '' || i < a.length - 1);
}

export function readRecords(dir: string): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const f of auditFiles(dir)) {
    for (const l of fileText(dir, f).split('\n')) {
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

/**
 * A file system that behaves like node's until told to fail: an errno on write or fsync,
 * a short write followed by an error, or an fsync that never returns until released.
 */
export class FaultyFs implements AuditFs {
  writeError: string | null = null;
  fsyncError: string | null = null;
  /** Write this many bytes of the next write, then fail the rest with EIO. */
  shortWrite: number | null = null;
  hangFsync = false;
  fsyncDelayMs = 0;
  fsyncs = 0;
  #released: (() => void)[] = [];

  release(): void {
    for (const r of this.#released.splice(0)) r();
  }

  mkdir = nodeAuditFs.mkdir;
  readdir = nodeAuditFs.readdir;
  stat = nodeAuditFs.stat;
  hangOpen = false;
  async openWrite(path: string, exclusive: boolean): Promise<number> {
    if (this.hangOpen) await new Promise<void>((resolve) => this.#released.push(resolve));
    return nodeAuditFs.openWrite(path, exclusive);
  }
  openRead = nodeAuditFs.openRead;
  read = nodeAuditFs.read;
  close = nodeAuditFs.close;
  fsyncDir = nodeAuditFs.fsyncDir;
  unlink = nodeAuditFs.unlink;

  async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.writeError) throw Object.assign(new Error('injected'), { code: this.writeError });
    if (this.shortWrite !== null) {
      const n = Math.min(this.shortWrite, length);
      this.shortWrite = null;
      this.writeError = 'EIO';
      return nodeAuditFs.write(fd, buf, offset, n, position);
    }
    return nodeAuditFs.write(fd, buf, offset, length, position);
  }

  async fsync(fd: number): Promise<void> {
    this.fsyncs++;
    if (this.fsyncError) throw Object.assign(new Error('injected'), { code: this.fsyncError });
    if (this.hangFsync) await new Promise<void>((resolve) => this.#released.push(resolve));
    if (this.fsyncDelayMs > 0) await new Promise((r) => setTimeout(r, this.fsyncDelayMs));
    return nodeAuditFs.fsync(fd);
  }
}

/**
 * Resolves at the writer's next 'health' event. The recovery probe's timer does not keep
 * the process alive (a daemon's server does), so a ref'd timer holds the test open meanwhile.
 */
export async function nextHealth(w: AuditWriter): Promise<void> {
  const hold = setInterval(() => {}, 1000);
  try {
    await new Promise<void>((resolve) => w.once('health', () => resolve()));
  } finally {
    clearInterval(hold);
  }
}

/** The most request records between two checkpoints (or before the first) in `dir`. */
export function widestCheckpointGap(dir: string): number {
  let since = 0;
  let widest = 0;
  for (const r of readRecords(dir)) {
    if (r.type === 'checkpoint') since = 0;
    else if (r.type === 'request') widest = Math.max(widest, ++since);
  }
  return widest;
}
