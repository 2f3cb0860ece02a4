// Loading the policy from a file, and the holder that keeps the live compiled policy.
// This is the I/O edge of src/policy/; decisions themselves stay pure (decide.ts).
//
// A reload swaps the policy only when the new document parses and validates; on any
// error the old policy stays in force and the result lists the problems. Requests read
// `current` once per decision, so a swap is atomic from their point of view.

import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import type { CompiledPolicy } from './compile.js';
import { callerClass, decide, type AuthzRequest, type Decision } from './decide.js';
import { parsePolicy, PolicyError, type PolicyFormat } from './parse.js';
import { Memo } from '../memo.js';

const MAX_CLASSES = 1024;

/** Format from the file extension: .yaml/.yml or .json. */
export function policyFormatOf(path: string): PolicyFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  if (ext === '.json') return 'json';
  throw new PolicyError([
    `(file): policy files end in .yaml, .yml or .json (got "${ext || 'no extension'}")`,
  ]);
}

/** Reads, parses and compiles a policy file. Throws PolicyError (I/O errors included). */
export async function loadPolicyFile(path: string): Promise<CompiledPolicy> {
  const format = policyFormatOf(path);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new PolicyError([`(file): cannot read the policy file (${code})`]);
  }
  return parsePolicy(text, format);
}

export type ReloadResult =
  { ok: true; generation: number } | { ok: false; generation: number; problems: readonly string[] };

export class PolicyHolder {
  #current: CompiledPolicy;
  #generation = 1;
  /** callerClass results under #current (emptied by every swap). */
  readonly #classes = new Memo<string, 'admin' | 'client'>(MAX_CLASSES);
  readonly #path: string | null;

  constructor(initial: CompiledPolicy, path: string | null = null) {
    this.#current = initial;
    this.#path = path;
  }

  /** Loads the file; throws PolicyError if the first policy is bad (nothing to keep). */
  static async fromFile(path: string): Promise<PolicyHolder> {
    return new PolicyHolder(await loadPolicyFile(path), path);
  }

  get current(): CompiledPolicy {
    return this.#current;
  }

  /** 1 for the first policy, +1 on every successful swap. */
  get generation(): number {
    return this.#generation;
  }

  get path(): string | null {
    return this.#path;
  }

  decide(request: AuthzRequest): Decision {
    return decide(this.#current, request);
  }

  /** The caller's class under the live policy (decide.ts, callerClass): asked once per call, for metrics. */
  callerClass(identity: string): 'admin' | 'client' {
    return this.#classes.get(identity) ?? this.#classes.set(identity, callerClass(this.#current, identity));
  }

  /** Re-reads the file this holder was loaded from. */
  async reload(): Promise<ReloadResult> {
    if (this.#path === null) {
      return {
        ok: false,
        generation: this.#generation,
        problems: ['(file): this policy was not loaded from a file'],
      };
    }
    const path = this.#path;
    return this.#swap(() => loadPolicyFile(path));
  }

  /** Swaps in a document given as text (admin API), under the same rule as reload. */
  async replace(text: string, format: PolicyFormat): Promise<ReloadResult> {
    return this.#swap(async () => parsePolicy(text, format));
  }

  async #swap(load: () => Promise<CompiledPolicy>): Promise<ReloadResult> {
    try {
      const next = await load();
      this.#current = next;
      this.#classes.clear();
      this.#generation += 1;
      return { ok: true, generation: this.#generation };
    } catch (err) {
      const problems = err instanceof PolicyError ? err.problems : [`(internal): ${(err as Error).message}`];
      return { ok: false, generation: this.#generation, problems };
    }
  }
}
