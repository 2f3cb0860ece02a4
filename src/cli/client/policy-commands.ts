// `hyokd policy show | check FILE | explain`.
//
// show and explain ask the server (GetPolicy, ExplainPolicy). check works offline: it
// parses and validates a policy file exactly as the server would (parsePolicy) and lists
// every problem; with --identity and --permission it also says, locally, what the file
// would decide for that request and which rules it considered.

import type { Command } from 'commander';
import {
  PERMISSIONS,
  PolicyError,
  explain as explainLocal,
  isPermission,
  parsePolicy,
  policyFormatOf,
  type AuthzRequest,
} from '../../policy/index.js';
import { EXIT_FAILED, UsageError, type CliIo } from './cli-io.js';
import { print, runAction, subcommand } from './command-kit.js';
import { addAdminOptions, openAdmin, type AdminFlags } from './admin-commands.js';
import { timestampToIso, type Timestamp } from './format.js';
import { callUnary } from './grpc-client.js';
import { parseKeyName, readInputFile } from './parse-input.js';

const MAX_POLICY_BYTES = 1024 * 1024;
const IDENTITY = /^[\x21-\x7e]{1,512}$/;

interface ExplainFlags {
  identity?: string;
  permission?: string;
  key?: string;
  reason?: string;
}

function parsePermission(value: string): string {
  if (!isPermission(value)) {
    throw new UsageError(
      `--permission: unknown permission ${JSON.stringify(value.slice(0, 40))}; use one of ${PERMISSIONS.join(', ')}`,
    );
  }
  return value;
}

function parseIdentity(value: string): string {
  if (!IDENTITY.test(value)) throw new UsageError('--identity: 1-512 printable characters without spaces');
  return value;
}

function parseReason(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value === '' || value.length > 128) throw new UsageError('--reason: 1-128 characters');
  return value;
}

export function registerPolicyCommands(program: Command, io: CliIo): void {
  const policy = subcommand(program, 'policy', io).description('authorization policy: show, check, explain');

  // show
  const show = subcommand(policy, 'show', io).description('print the policy in force on the server');
  addAdminOptions(show);
  runAction<AdminFlags>(show, io, async (_a, o) => {
    const conn = await openAdmin(o, io);
    try {
      const res = await callUnary<{
        policy: { document: string; etag: string; updatedTime: Timestamp | null; updatedBy: string } | null;
      }>(conn.client, 'GetPolicy', conn.base, { timeoutMs: conn.timeoutMs });
      const p = res.policy ?? { document: '', etag: '', updatedTime: null, updatedBy: '' };
      const updatedTime = timestampToIso(p.updatedTime);
      print(
        io,
        o.json,
        [
          `# etag: ${p.etag || '-'}  updated: ${updatedTime ?? '-'}  by: ${p.updatedBy || '-'}`,
          p.document.replace(/\n$/, ''),
        ],
        { document: p.document, etag: p.etag, updatedTime, updatedBy: p.updatedBy },
      );
    } finally {
      conn.close();
    }
  });

  // check (local)
  const check = subcommand(policy, 'check', io)
    .description(
      'validate a local policy file (.yaml, .yml or .json) and list its problems; optionally explain a request against it',
    )
    .argument('<file>', 'policy file')
    .option('--identity <id>', "with --permission: decide this identity's request locally")
    .option('--permission <p>', `one of ${PERMISSIONS.join(', ')}`)
    .option('--key <name>', 'the key of the hypothetical request')
    .option('--reason <text>', 'the access reason of the hypothetical request')
    .option('--json', 'print JSON for scripts');
  runAction<ExplainFlags & { json?: boolean }>(check, io, async ([file], o) => {
    let format;
    try {
      format = policyFormatOf(file!);
    } catch (e) {
      throw new UsageError(`FILE: ${(e as PolicyError).problems?.[0] ?? (e as Error).message}`);
    }
    const wantExplain =
      o.identity !== undefined || o.permission !== undefined || o.key !== undefined || o.reason !== undefined;
    let request: AuthzRequest | undefined;
    if (wantExplain) {
      if (o.identity === undefined || o.permission === undefined) {
        throw new UsageError('--identity and --permission go together (with optional --key and --reason)');
      }
      request = {
        identity: parseIdentity(o.identity),
        permission: parsePermission(o.permission) as AuthzRequest['permission'],
      };
      if (o.key !== undefined) request.keyName = parseKeyName(o.key, '--key');
      const reason = parseReason(o.reason);
      if (reason !== undefined) request.reason = reason;
    }
    const text = (await readInputFile(file!, 'FILE', MAX_POLICY_BYTES)).toString('utf8');
    let compiled;
    try {
      compiled = parsePolicy(text, format);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      print(
        io,
        o.json,
        [
          `${file}: INVALID (${e.problems.length} problem${e.problems.length === 1 ? '' : 's'})`,
          ...e.problems.map((p) => `  - ${p}`),
        ],
        {
          file,
          valid: false,
          problems: e.problems,
        },
      );
      return EXIT_FAILED;
    }
    if (!request) {
      print(io, o.json, `${file}: OK`, { file, valid: true, problems: [] });
      return undefined;
    }
    const ex = explainLocal(compiled, request);
    print(
      io,
      o.json,
      [
        `${file}: OK`,
        `${ex.decision.allowed ? 'ALLOWED' : 'DENIED'} by ${ex.decision.rule}: ${ex.decision.explanation}`,
        ...ex.steps.map((s) => `  ${s.matched ? '*' : ' '} ${s.rule}: ${s.detail}`),
      ],
      { file, valid: true, problems: [], decision: ex.decision, steps: ex.steps },
    );
    return undefined;
  });

  // set (server)
  const set = subcommand(policy, 'set', io)
    .description('replace the policy on the server with a local file (checked here first)')
    .argument('<file>', 'policy file (.yaml, .yml or .json)')
    .option('--etag <etag>', 'only if the policy in force still has this etag (from `policy show`)');
  addAdminOptions(set);
  runAction<AdminFlags & { etag?: string }>(set, io, async ([file], o) => {
    let format;
    try {
      format = policyFormatOf(file!);
    } catch (e) {
      throw new UsageError(`FILE: ${(e as PolicyError).problems?.[0] ?? (e as Error).message}`);
    }
    if (o.etag !== undefined && !/^[\x21-\x7e]{1,256}$/.test(o.etag))
      throw new UsageError('--etag: 1-256 printable characters');
    const text = (await readInputFile(file!, 'FILE', MAX_POLICY_BYTES)).toString('utf8');
    try {
      parsePolicy(text, format);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      throw new UsageError(
        `FILE: ${file} is not a valid policy (run \`hyokd policy check ${file}\`):\n${e.problems.map((p) => `  - ${p}`).join('\n')}`,
      );
    }
    const conn = await openAdmin(o, io);
    try {
      const res = await callUnary<{
        policy: { document: string; etag: string; updatedTime: Timestamp | null; updatedBy: string } | null;
      }>(
        conn.client,
        'SetPolicy',
        { ...conn.base, document: text, etag: o.etag ?? '' },
        { timeoutMs: conn.timeoutMs },
      );
      const p = res.policy ?? { document: '', etag: '', updatedTime: null, updatedBy: '' };
      const updatedTime = timestampToIso(p.updatedTime);
      print(
        io,
        o.json,
        `policy set: etag ${p.etag || '-'}, updated ${updatedTime ?? '-'} by ${p.updatedBy || '-'}`,
        {
          etag: p.etag,
          updatedTime,
          updatedBy: p.updatedBy,
        },
      );
    } finally {
      conn.close();
    }
  });

  // explain (server)
  const explain = subcommand(policy, 'explain', io)
    .description('ask the server which rule decides a hypothetical request')
    .requiredOption('--identity <id>', 'identity to evaluate as (SPIFFE ID, DNS name or CN)')
    .requiredOption('--permission <p>', `one of ${PERMISSIONS.join(', ')}`)
    .option('--key <name>', 'the key of the hypothetical request')
    .option('--reason <text>', 'the access reason of the hypothetical request');
  // --reason belongs to the hypothetical request here, not to this call's own context.
  addAdminOptions(explain, { reason: false });
  runAction<AdminFlags & ExplainFlags & { identity: string; permission: string }>(
    explain,
    io,
    async (_a, o) => {
      const requestContext: Record<string, string> = {};
      const reason = parseReason(o.reason);
      if (reason !== undefined) requestContext.reason = reason;
      const body = {
        identity: parseIdentity(o.identity),
        operation: parsePermission(o.permission),
        keyName: o.key === undefined ? '' : parseKeyName(o.key, '--key'),
        requestContext,
      };
      const conn = await openAdmin({ ...o, reason: undefined }, io);
      try {
        const res = await callUnary<{
          allowed: boolean;
          decidedBy: string;
          explanation: string;
          quorumRequired: boolean;
          quorumApprovals: number;
          quorumOperations: string[];
          trace: { rule: string; matched: boolean; note: string }[];
        }>(conn.client, 'ExplainPolicy', { ...conn.base, ...body }, { timeoutMs: conn.timeoutMs });
        print(
          io,
          o.json,
          [
            `${res.allowed ? 'ALLOWED' : 'DENIED'} by ${res.decidedBy}: ${res.explanation}`,
            ...(res.quorumRequired
              ? [
                  `needs quorum: ${res.quorumApprovals} approval(s) for ${(res.quorumOperations ?? []).join(', ')}`,
                ]
              : []),
            ...res.trace.map((s) => `  ${s.matched ? '*' : ' '} ${s.rule}${s.note ? `: ${s.note}` : ''}`),
          ],
          res,
        );
      } finally {
        conn.close();
      }
    },
  );
}
