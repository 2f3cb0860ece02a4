// The configuration schema: one zod v4 schema that validates the merged YAML + env input.
// Every field carries a description; the error formatter shows it as the "how to fix".
// Path fields have no default here: their defaults depend on `home` and are filled in by
// resolveConfig (load-config.ts), which also makes relative paths absolute.
import { isIP } from 'node:net';
import { z } from 'zod';

export const MIB = 1024 * 1024;
export const DAY_MS = 24 * 60 * 60 * 1000;

/** "host:port" for IPv4, hostnames and "[v6]:port"; port 0 means "pick a free port". */
export function parseListen(value: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  if (m === null) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) return null;
  return { host, port };
}

const listen = (what: string) =>
  z
    .string()
    .refine((v) => parseListen(v) !== null, {
      message: 'Invalid listen address',
    })
    .describe(`${what} as host:port, e.g. 127.0.0.1:8443 or [::1]:8443 (port 0 picks a free port)`);

const path = (what: string) =>
  z.string().min(1).describe(`${what}; a relative path is resolved against home`);
const positiveInt = (what: string) => z.int().positive().describe(`${what}, a positive integer`);
const nonNegativeInt = (what: string) => z.int().nonnegative().describe(`${what}, an integer >= 0`);
const bool = (what: string) => z.boolean().describe(`${what}: true or false`);

/** Environment variable names: what pinEnv may hold. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const hsmSchema = z
  .strictObject({
    module: path('path of the PKCS#11 module (.so) to load').default('/usr/lib/softhsm/libsofthsm2.so'),
    tokenLabel: z
      .string()
      .min(1)
      .max(32)
      .optional()
      .describe('label of the token to use (at most 32 characters); set tokenLabel or tokenSerial, not both'),
    tokenSerial: z
      .string()
      .min(1)
      .max(16)
      .optional()
      .describe(
        'serial number of the token to use (at most 16 characters); set tokenLabel or tokenSerial, not both',
      ),
    pinFile: path('file holding the user PIN (mode 0600); set pinFile or pinEnv, not both').optional(),
    pinEnv: z
      .string()
      .regex(ENV_NAME, { message: 'Invalid environment variable name' })
      .optional()
      .describe(
        'NAME of the environment variable holding the user PIN (not the PIN itself); set pinFile or pinEnv, not both',
      ),
    sessions: z
      .int()
      .positive()
      .nullable()
      .default(null)
      .describe(
        'number of worker sessions, a positive integer, or null (env: "auto") to size from the CPU count',
      ),
    queueCapacity: positiveInt('maximum queued HSM operations before requests are refused').default(4096),
    sessionObjectCopies: bool(
      'copy each KEK into a per-session object for speed (still non-extractable)',
    ).default(false),
    sessionCopyRecheckMs: z
      .int()
      .min(1)
      .max(3_600_000)
      .describe(
        'with sessionObjectCopies: how often, in milliseconds, a copy is checked against its token key (gone, renamed or disabled there: the copy is dropped), an integer 1..3600000',
      )
      .default(1000),
    opTimeoutMs: positiveInt('timeout of one HSM operation in milliseconds').default(5000),
  })
  .superRefine((hsm, ctx) => {
    if (hsm.pinFile !== undefined && hsm.pinEnv !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['pinEnv'],
        message: 'pinFile and pinEnv are both set',
        input: undefined,
      });
    }
    if (hsm.tokenLabel !== undefined && hsm.tokenSerial !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tokenSerial'],
        message: 'tokenLabel and tokenSerial are both set',
        input: undefined,
      });
    }
  });

export const serverSchema = z.strictObject({
  listen: listen('gRPC listen address').default('127.0.0.1:8443'),
  tls: z
    .strictObject({
      cert: path('server certificate PEM').optional(),
      key: path('server private key PEM').optional(),
      clientCa: path('CA certificate(s) PEM that client certificates must chain to').optional(),
    })
    .prefault({}),
  keepaliveTimeMs: positiveInt('interval between server keepalive pings in milliseconds').default(60_000),
  keepaliveTimeoutMs: positiveInt('how long to wait for a keepalive ping ack in milliseconds').default(
    20_000,
  ),
  maxConnectionAgeMs: positiveInt('maximum lifetime of a client connection in milliseconds').default(
    30 * 60_000,
  ),
  maxConnectionAgeGraceMs: nonNegativeInt(
    'grace period for calls on an aged-out connection in milliseconds',
  ).default(30_000),
  maxBatchItems: positiveInt('maximum items in one batch request').default(256),
  maxDekBytes: positiveInt('maximum plaintext DEK size in bytes').default(64),
  maxAadBytes: nonNegativeInt('maximum caller AAD size in bytes').default(8192),
  maxContextEntries: nonNegativeInt('maximum encryption-context entries per request').default(16),
  maxMessageBytes: positiveInt('maximum gRPC message size in bytes').default(4 * MIB),
  drainTimeoutMs: nonNegativeInt('how long shutdown waits for in-flight calls in milliseconds').default(
    10_000,
  ),
});

export const storeSchema = z.strictObject({
  path: path('SQLite metadata database file').optional(),
});

export const auditSchema = z.strictObject({
  dir: path('directory of the audit log files').optional(),
  enabled: bool('write the audit log (disable only for benchmarks)').default(true),
  rotateBytes: positiveInt('rotate the audit file after this many bytes').default(64 * MIB),
  rotateAgeMs: positiveInt('rotate the audit file after this many milliseconds').default(DAY_MS),
  reserveBytes: nonNegativeInt(
    'zero-filled space kept ahead of the audit records, in bytes (0: plain appends)',
  ).default(4 * MIB),
  checkpointEvery: positiveInt('write a signed checkpoint every N records').default(1000),
  checkpointIntervalMs: positiveInt('write a checkpoint at least this often in milliseconds').default(60_000),
  writeTimeoutMs: positiveInt('fail the request when an audit write takes longer, in milliseconds').default(
    2000,
  ),
  // 0: a batch is written as soon as the writer is free; records that arrive while a
  // write is on disk form the next batch by themselves. A delay only adds latency to every
  // call that finds the writer idle (measured with 2 ms: each wave of concurrent unary
  // calls waited 2.4 ms before its write, every time).
  groupCommitMaxDelayMs: nonNegativeInt(
    'extra wait of an idle audit writer for more records before it writes, in milliseconds',
  ).default(0),
});

export const metricsSchema = z.strictObject({
  listen: listen('Prometheus metrics listen address').default('127.0.0.1:9464'),
  enabled: bool('serve Prometheus metrics').default(true),
});

export const policySchema = z.strictObject({
  file: path('authorization policy YAML file').optional(),
});

/**
 * The admin operations quorum can hold: the names hyok.admin.v1 RPCs are audited and
 * held under (src/server/quorum-gate.ts re-exports this list as QUORUM_OPERATIONS).
 * Kept here so the config layer does not import the server.
 */
export const QUORUM_OPERATION_NAMES = [
  'CreateKey',
  'DeleteKey',
  'PurgeKey',
  'RecoverKey',
  'BackupKey',
  'RestoreKey',
  'ImportKey',
  'AdoptKey',
  'RotateKey',
  'SetPolicy',
  'DisableProtectedKey',
  'EnablePurgeProtection',
  'InitSecurityDomain',
  'JoinSecurityDomain',
] as const;

export const quorumSchema = z.strictObject({
  operations: z
    .array(z.enum(QUORUM_OPERATION_NAMES))
    .default([])
    .describe(
      `admin operations held for M-of-N approval (env: comma-separated), any of ${QUORUM_OPERATION_NAMES.join(', ')}; empty: none`,
    ),
  approvals: positiveInt('approvals a held operation needs').default(2),
  ttlMs: positiveInt('how long a held request waits for approval in milliseconds').default(DAY_MS),
});

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const logSchema = z.strictObject({
  level: z
    .enum(LOG_LEVELS)
    .default('info')
    .describe(`operational log level, one of ${LOG_LEVELS.join(', ')}`),
});

/** The whole file. Top-level keys are fixed; unknown keys anywhere are errors. */
export const configSchema = z.strictObject({
  home: z
    .string()
    .min(1)
    .optional()
    .describe(
      'data directory (env HYOKD_HOME, default ./var); a relative path is resolved against the working directory',
    ),
  hsm: hsmSchema.prefault({}),
  server: serverSchema.prefault({}),
  store: storeSchema.prefault({}),
  audit: auditSchema.prefault({}),
  metrics: metricsSchema.prefault({}),
  policy: policySchema.prefault({}),
  quorum: quorumSchema.prefault({}),
  log: logSchema.prefault({}),
});

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
