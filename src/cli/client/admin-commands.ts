// Key administration (hyok.admin.v1.KeyAdmin): `hyokd keys …`. Connects with the admin
// bundle by default. Sensitive operations may fail with QUORUM_REQUIRED; the error shows
// the quorum request id, and once approvers have approved it the same command is
// repeated with --quorum-request-id.

import { createPublicKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { UsageError, type CliIo } from './cli-io.js';
import { print, runAction, subcommand } from './command-kit.js';
import { addConnectionOptions, openConnection, type Connection, type ConnectionFlags } from './connection.js';
import {
  keyDetailLines,
  keySummaryLine,
  timestampToIso,
  toJson,
  type AdminKey,
  type Timestamp,
} from './format.js';
import { callUnary } from './grpc-client.js';
import { KIND_TO_ENUM, OP_TO_ENUM } from '../../proto-enums.js';
import {
  collect,
  parseDuration,
  parseIntInRange,
  parseKeyName,
  parsePairs,
  readInputFile,
} from './parse-input.js';

export interface AdminFlags extends ConnectionFlags {
  quorumRequestId?: string;
}

/** Largest backup or import blob read from disk. */
const MAX_BLOB_BYTES = 1024 * 1024;
const QUORUM_ID = /^[\x21-\x7e]{1,128}$/;

/** Connection flags plus --quorum-request-id. */
export function addAdminOptions(cmd: Command, opts: { reason?: boolean } = {}): Command {
  cmd.option(
    '--quorum-request-id <id>',
    'repeat a call that needed quorum approval, citing the approved request',
  );
  return addConnectionOptions(cmd, opts);
}

export async function openAdmin(o: AdminFlags, io: CliIo): Promise<Connection> {
  const extra: Record<string, string> = {};
  if (o.quorumRequestId !== undefined) {
    if (!QUORUM_ID.test(o.quorumRequestId)) {
      throw new UsageError('--quorum-request-id: 1-128 printable ASCII characters without spaces');
    }
    extra.quorum_request_id = o.quorumRequestId;
  }
  return openConnection(o, io, 'admin', extra);
}

/** Runs one admin call on a fresh connection. */
async function adminCall<R>(o: AdminFlags, io: CliIo, method: string, body: object): Promise<R> {
  const conn = await openAdmin(o, io);
  try {
    return await callUnary<R>(conn.client, method, { ...conn.base, ...body }, { timeoutMs: conn.timeoutMs });
  } finally {
    conn.close();
  }
}

// --- vocabulary --------------------------------------------------------------------------

const KINDS: Record<string, string> = KIND_TO_ENUM;
/** --ops takes the key layer's names, case-insensitively (wrapkey, wrapKey). */
const OPS: Record<string, string> = Object.fromEntries(
  Object.entries(OP_TO_ENUM).map(([name, e]) => [name.toLowerCase(), e]),
);
const WRAP_ALGS: Record<string, string> = {
  'rsa-aes-kw-sha1': 'RSA_AES_KEY_WRAP_SHA1',
  'rsa-aes-kw-sha256': 'RSA_AES_KEY_WRAP_SHA256',
  'rsa-oaep-sha256': 'RSA_OAEP_SHA256',
};

function fromVocabulary(value: string, table: Record<string, string>, flag: string): string {
  const direct = Object.values(table).find((v) => v === value.toUpperCase().replace(/-/g, '_'));
  const mapped = table[value.toLowerCase()];
  if (mapped) return mapped;
  if (direct) return direct;
  throw new UsageError(
    `${flag}: unknown value ${JSON.stringify(value.slice(0, 60))}; use one of ${Object.keys(table).join(', ')}`,
  );
}

export function parseKind(value: string, flag = '--kind'): string {
  return fromVocabulary(value, KINDS, flag);
}

export function parseOps(value: string | undefined): string[] {
  if (value === undefined) return [];
  const parts = value.split(',').map((s) => s.trim());
  if (parts.some((p) => p === ''))
    throw new UsageError('--ops: an empty entry; use e.g. --ops wrapKey,unwrapKey');
  return [...new Set(parts.map((p) => fromVocabulary(p, OPS, '--ops')))];
}

export function parseWrapAlg(value: string): string {
  return fromVocabulary(value, WRAP_ALGS, '--wrap-alg');
}

interface NewKeyFlags {
  ops?: string;
  tag?: string[];
  retentionDays?: string;
  purgeProtection?: boolean;
}

function addNewKeyOptions(cmd: Command): Command {
  return cmd
    .option(
      '--ops <list>',
      "allowed operations, comma-separated: encrypt, decrypt, wrapKey, unwrapKey, sign, verify (default: the kind's)",
    )
    .option('--tag <key=value>', 'tag; repeatable', collect)
    .option('--retention-days <n>', 'days a deleted key stays recoverable, 7-90 (default: server, 90)')
    .option('--purge-protection', 'forbid purging before the retention period ends (cannot be undone)');
}

function newKeyFields(o: NewKeyFlags): Record<string, unknown> {
  return {
    allowedOperations: parseOps(o.ops),
    tags: parsePairs(o.tag ?? [], '--tag'),
    retentionDays:
      o.retentionDays === undefined ? 0 : parseIntInRange(o.retentionDays, '--retention-days', 7, 90),
    purgeProtection: o.purgeProtection === true,
  };
}

async function writeOutFile(
  path: string,
  data: Buffer | string,
  mode: number,
  force: boolean | undefined,
): Promise<void> {
  try {
    await writeFile(path, data, { mode, flag: force ? 'w' : 'wx' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'EEXIST') throw new UsageError(`--out: ${path} exists; remove it or pass --force`);
    throw new UsageError(`--out: cannot write ${path} (${code})`);
  }
}

function printKey(
  io: CliIo,
  json: boolean | undefined,
  key: AdminKey,
  extra: Record<string, unknown> = {},
  head: string[] = [],
): void {
  print(io, json, [...head, ...keyDetailLines(key)], { ...extra, key: toJson(key) });
}

// --- commands ----------------------------------------------------------------------------

export function registerAdminCommands(program: Command, io: CliIo): void {
  const keys = subcommand(program, 'keys', io).description('key administration (admin API)');

  // create
  const create = subcommand(keys, 'create', io)
    .description('create a key in the HSM (version 1)')
    .argument('<name>', 'new key name')
    .requiredOption('--kind <kind>', 'aes-256, rsa-3072 or ec-p256')
    .option('--rotate-after <duration>', 'rotate automatically, e.g. 90d')
    .option(
      '--backupable',
      'create it CKA_EXTRACTABLE (still sensitive) so `keys backup` can wrap it out under the security domain key; default: never extractable',
    );
  addNewKeyOptions(create);
  addAdminOptions(create);
  runAction<AdminFlags & NewKeyFlags & { kind: string; rotateAfter?: string; backupable?: boolean }>(
    create,
    io,
    async ([name], o) => {
      const body = {
        name: parseKeyName(name!, 'NAME'),
        kind: parseKind(o.kind),
        ...newKeyFields(o),
        backupable: o.backupable === true,
        rotationPolicy:
          o.rotateAfter === undefined
            ? null
            : { rotateAfter: { seconds: String(parseDuration(o.rotateAfter, '--rotate-after')), nanos: 0 } },
      };
      const res = await adminCall<{ key: AdminKey }>(o, io, 'CreateKey', body);
      printKey(io, o.json, res.key);
    },
  );

  // list
  const list = subcommand(keys, 'list', io)
    .description('list keys (all pages)')
    .option('--include-deleted', 'include soft-deleted keys')
    .option('--tag <key=value>', 'only keys with this tag; repeatable', collect)
    .option('--page-size <n>', 'keys per call (default: server)');
  addAdminOptions(list);
  runAction<AdminFlags & { includeDeleted?: boolean; tag?: string[]; pageSize?: string }>(
    list,
    io,
    async (_a, o) => {
      const tagFilter = parsePairs(o.tag ?? [], '--tag');
      const pageSize = o.pageSize === undefined ? 0 : parseIntInRange(o.pageSize, '--page-size', 1, 10_000);
      const conn = await openAdmin(o, io);
      const all: AdminKey[] = [];
      try {
        let pageToken = '';
        for (let pages = 0; ; pages++) {
          if (pages >= 10_000) throw new Error('the server kept returning pages; stopped after 10000');
          const res = await callUnary<{ keys: AdminKey[]; nextPageToken: string }>(
            conn.client,
            'ListKeys',
            { ...conn.base, pageSize, pageToken, includeDeleted: o.includeDeleted === true, tagFilter },
            { timeoutMs: conn.timeoutMs },
          );
          all.push(...res.keys);
          if (!res.nextPageToken || res.nextPageToken === pageToken) break;
          pageToken = res.nextPageToken;
        }
      } finally {
        conn.close();
      }
      print(io, o.json, all.length ? all.map(keySummaryLine) : ['(no keys)'], {
        keys: all.map((k) => toJson(k)),
      });
    },
  );

  // get / rotate / delete / recover / protect: NAME only
  const simple: Array<[string, string, string]> = [
    ['get', 'GetKey', 'full metadata of a key'],
    ['rotate', 'RotateKey', 'create a new version and make it primary'],
    ['delete', 'DeleteKey', 'soft-delete a key (recoverable until its purge date)'],
    ['recover', 'RecoverKey', 'undo a soft delete'],
    [
      'protect',
      'EnablePurgeProtection',
      'turn purge protection on (cannot be undone; a protected key is left as it is)',
    ],
  ];
  for (const [cmdName, method, description] of simple) {
    const c = subcommand(keys, cmdName, io).description(description).argument('<name>', 'key name');
    addAdminOptions(c);
    runAction<AdminFlags>(c, io, async ([name], o) => {
      const res = await adminCall<{ key: AdminKey; newVersion?: number }>(o, io, method, {
        name: parseKeyName(name!, 'NAME'),
      });
      if (method === 'RotateKey') {
        printKey(io, o.json, res.key, { newVersion: res.newVersion }, [`new version: v${res.newVersion}`]);
      } else {
        printKey(io, o.json, res.key);
      }
    });
  }

  // enable / disable
  for (const [cmdName, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    const c = subcommand(keys, cmdName, io)
      .description(`${cmdName} a key, or one version of it (takes effect on the next request)`)
      .argument('<name>', 'key name')
      .option('--version <n>', 'only this version');
    addAdminOptions(c);
    runAction<AdminFlags & { version?: string }>(c, io, async ([name], o) => {
      const body: Record<string, unknown> = { name: parseKeyName(name!, 'NAME'), enabled };
      if (o.version !== undefined) body.version = parseIntInRange(o.version, '--version', 1, 0xffffffff);
      const res = await adminCall<{ key: AdminKey }>(o, io, 'SetKeyState', body);
      printKey(io, o.json, res.key);
    });
  }

  // tag
  const tag = subcommand(keys, 'tag', io)
    .description("set, merge or remove a key's tags")
    .argument('<name>', 'key name')
    .option('--set <key=value>', 'tag to set; repeatable', collect)
    .option('--remove <key>', 'tag key to remove; repeatable', collect)
    .option('--replace', 'the tags become exactly the --set ones');
  addAdminOptions(tag);
  runAction<AdminFlags & { set?: string[]; remove?: string[]; replace?: boolean }>(
    tag,
    io,
    async ([name], o) => {
      if (o.set === undefined && o.remove === undefined && !o.replace) {
        throw new UsageError('give --set, --remove or --replace');
      }
      const remove = o.remove ?? [];
      for (const k of remove) {
        if (!/^[A-Za-z0-9_.-]{1,64}$/.test(k))
          throw new UsageError(`--remove: ${JSON.stringify(k.slice(0, 80))} is not a tag key`);
      }
      const res = await adminCall<{ key: AdminKey }>(o, io, 'SetTags', {
        name: parseKeyName(name!, 'NAME'),
        tags: parsePairs(o.set ?? [], '--set'),
        replace: o.replace === true,
        remove,
      });
      printKey(io, o.json, res.key);
    },
  );

  // rotation
  const rotation = subcommand(keys, 'rotation', io)
    .description("set or clear a key's automatic rotation schedule")
    .argument('<name>', 'key name')
    .option('--rotate-after <duration>', 'rotate this long after the primary version was created, e.g. 90d')
    .option('--off', 'no automatic rotation');
  addAdminOptions(rotation);
  runAction<AdminFlags & { rotateAfter?: string; off?: boolean }>(rotation, io, async ([name], o) => {
    if ((o.rotateAfter === undefined) === (o.off !== true)) {
      throw new UsageError('give exactly one of --rotate-after or --off');
    }
    const seconds = o.rotateAfter === undefined ? 0 : parseDuration(o.rotateAfter, '--rotate-after');
    if (o.rotateAfter !== undefined && seconds === 0)
      throw new UsageError('--rotate-after: must be more than 0 (or use --off)');
    const res = await adminCall<{ key: AdminKey }>(o, io, 'SetRotationPolicy', {
      name: parseKeyName(name!, 'NAME'),
      rotationPolicy: seconds === 0 ? null : { rotateAfter: { seconds: String(seconds), nanos: 0 } },
    });
    printKey(io, o.json, res.key);
  });

  // purge
  const purge = subcommand(keys, 'purge', io)
    .description("destroy a soft-deleted key's material in the HSM now (irreversible)")
    .argument('<name>', 'key name');
  addAdminOptions(purge);
  runAction<AdminFlags>(purge, io, async ([name], o) => {
    const res = await adminCall<{ name: string; purgedTime: Timestamp | null }>(o, io, 'PurgeKey', {
      name: parseKeyName(name!, 'NAME'),
    });
    const purgedTime = timestampToIso(res.purgedTime);
    print(io, o.json, `purged ${res.name} at ${purgedTime ?? '-'}`, { name: res.name, purgedTime });
  });

  // adopt
  const adopt = subcommand(keys, 'adopt', io)
    .description('bring an existing HSM object under hyokd as version 1 of a new key')
    .argument('<name>', 'new key name')
    .requiredOption('--kind <kind>', 'aes-256, rsa-3072 or ec-p256 (must match the object)')
    .option('--hsm-id <hex>', 'the object by CKA_ID, hex')
    .option('--hsm-label <label>', 'the object by CKA_LABEL')
    .option(
      '--allow-extractable',
      'adopt an object that is CKA_EXTRACTABLE: anyone with a session on the token can wrap it out',
    );
  addNewKeyOptions(adopt);
  addAdminOptions(adopt);
  runAction<
    AdminFlags & NewKeyFlags & { kind: string; hsmId?: string; hsmLabel?: string; allowExtractable?: boolean }
  >(adopt, io, async ([name], o) => {
    if ((o.hsmId === undefined) === (o.hsmLabel === undefined)) {
      throw new UsageError('name the HSM object with exactly one of --hsm-id or --hsm-label');
    }
    const body: Record<string, unknown> = {
      name: parseKeyName(name!, 'NAME'),
      kind: parseKind(o.kind),
      ...newKeyFields(o),
    };
    if (o.hsmId !== undefined) {
      if (!/^(?:[0-9a-fA-F]{2}){1,64}$/.test(o.hsmId)) {
        throw new UsageError('--hsm-id: expected 1-64 bytes of hex (an even number of 0-9 a-f)');
      }
      body.hsmObjectId = Buffer.from(o.hsmId, 'hex');
    } else {
      if (o.hsmLabel === '' || Buffer.byteLength(o.hsmLabel!, 'utf8') > 256) {
        throw new UsageError('--hsm-label: 1-256 bytes');
      }
      body.hsmLabel = o.hsmLabel;
    }
    if (o.allowExtractable === true) body.allowExtractable = true;
    const res = await adminCall<{ key: AdminKey }>(o, io, 'AdoptKey', body);
    printKey(io, o.json, res.key);
  });

  // backup
  const backup = subcommand(keys, 'backup', io)
    .description('export a key (all versions) as a blob restorable only into the same security domain')
    .argument('<name>', 'key name')
    .requiredOption('--out <file>', 'where to write the blob')
    .option('--force', 'overwrite --out if it exists');
  addAdminOptions(backup);
  runAction<AdminFlags & { out: string; force?: boolean }>(backup, io, async ([name], o) => {
    const keyName = parseKeyName(name!, 'NAME');
    const res = await adminCall<{ backup: Buffer; securityDomain: string }>(o, io, 'BackupKey', {
      name: keyName,
    });
    await writeOutFile(o.out, res.backup, 0o600, o.force);
    print(
      io,
      o.json,
      `wrote backup of ${keyName} (${res.backup.length} bytes, security domain ${res.securityDomain || '-'}) to ${o.out}`,
      { name: keyName, file: o.out, bytes: res.backup.length, securityDomain: res.securityDomain },
    );
  });

  // restore
  const restore = subcommand(keys, 'restore', io)
    .description('restore a key from a backup blob (under its original name)')
    .argument('<file>', 'blob written by `keys backup`');
  addAdminOptions(restore);
  runAction<AdminFlags>(restore, io, async ([file], o) => {
    const blob = await readInputFile(file!, 'FILE', MAX_BLOB_BYTES);
    if (blob.length === 0) throw new UsageError('FILE: the backup file is empty');
    const res = await adminCall<{ key: AdminKey }>(o, io, 'RestoreKey', { backup: blob });
    printKey(io, o.json, res.key);
  });

  // import-key (BYOK step 1)
  const importKey = subcommand(keys, 'import-key', io)
    .description('BYOK step 1: create a short-lived key-exchange key; saves its public key PEM')
    .requiredOption('--out <file>', 'where to save the key-exchange public key (PEM)')
    .option('--kind <kind>', 'key-exchange key kind (only rsa-3072 today)', 'rsa-3072')
    .option('--force', 'overwrite --out if it exists');
  addAdminOptions(importKey);
  runAction<AdminFlags & { out: string; kind: string; force?: boolean }>(importKey, io, async (_a, o) => {
    const kind = parseKind(o.kind);
    const res = await adminCall<{
      importKeyId: string;
      publicKeySpki: Buffer;
      supportedAlgorithms: string[];
      expireTime: Timestamp | null;
    }>(o, io, 'CreateImportKey', { kind });
    let pem: string;
    try {
      pem = createPublicKey({ key: res.publicKeySpki, format: 'der', type: 'spki' }).export({
        format: 'pem',
        type: 'spki',
      }) as string;
    } catch {
      throw new Error('the server returned a key-exchange public key that is not a valid SPKI');
    }
    await writeOutFile(o.out, pem, 0o644, o.force);
    const expireTime = timestampToIso(res.expireTime);
    print(
      io,
      o.json,
      [
        `import key id: ${res.importKeyId}`,
        `public key:    ${o.out}`,
        `algorithms:    ${res.supportedAlgorithms.join(', ') || '-'}`,
        `expires:       ${expireTime ?? '-'}`,
        `next: hyokd byok pack --public-key ${o.out} --key-file MATERIAL --out BLOB, then`,
        `      hyokd keys import NAME --kind KIND --import-key-id ${res.importKeyId} --blob BLOB --wrap-alg ALG`,
      ],
      {
        importKeyId: res.importKeyId,
        publicKeyFile: o.out,
        publicKeySpki: res.publicKeySpki.toString('base64'),
        supportedAlgorithms: res.supportedAlgorithms,
        expireTime,
      },
    );
  });

  // import (BYOK step 2)
  const imp = subcommand(keys, 'import', io)
    .description('BYOK step 2: import key material wrapped to a key-exchange key')
    .argument('<name>', 'key to create, or to add a version to with --new-version')
    .requiredOption('--kind <kind>', 'kind of the wrapped material: aes-256, rsa-3072 or ec-p256')
    .requiredOption('--import-key-id <id>', 'from `keys import-key`')
    .requiredOption('--blob <file>', 'the wrapped key material (e.g. from `byok pack`)')
    .requiredOption(
      '--wrap-alg <alg>',
      'how the blob was wrapped: rsa-aes-kw-sha1, rsa-aes-kw-sha256 or rsa-oaep-sha256',
    )
    .option('--new-version', 'add a version to the existing key instead of creating one');
  addNewKeyOptions(imp);
  addAdminOptions(imp);
  runAction<
    AdminFlags &
      NewKeyFlags & { kind: string; importKeyId: string; blob: string; wrapAlg: string; newVersion?: boolean }
  >(imp, io, async ([name], o) => {
    const keyName = parseKeyName(name!, 'NAME');
    if (!/^[\x21-\x7e]{1,256}$/.test(o.importKeyId))
      throw new UsageError('--import-key-id: 1-256 printable characters');
    const body: Record<string, unknown> = {
      name: keyName,
      kind: parseKind(o.kind),
      importKeyId: o.importKeyId,
      wrapAlgorithm: parseWrapAlg(o.wrapAlg),
      newVersion: o.newVersion === true,
      ...newKeyFields(o),
    };
    if (
      o.newVersion &&
      (o.ops !== undefined || o.tag !== undefined || o.retentionDays !== undefined || o.purgeProtection)
    ) {
      throw new UsageError(
        '--ops, --tag, --retention-days and --purge-protection apply to a new key, not with --new-version',
      );
    }
    const blob = await readInputFile(o.blob, '--blob', MAX_BLOB_BYTES);
    if (blob.length === 0) throw new UsageError('--blob: the file is empty');
    body.wrappedKeyMaterial = blob;
    const res = await adminCall<{ key: AdminKey; version: number }>(o, io, 'ImportKey', body);
    printKey(io, o.json, res.key, { version: res.version }, [`imported as version v${res.version}`]);
  });
}
