import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, status } from '@grpc/grpc-js';
import t from 'tap';
import {
  ERROR_CODES,
  ERROR_DOMAIN,
  ERRORS,
  HyokError,
  decodeStatusDetails,
  errorsTableMarkdown,
  fromHsmError,
  isErrorCode,
  toGrpcError,
  toHyokError,
  toItemStatus,
} from '../src/errors.js';
import { HsmError } from '../src/hsm/errors.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

function hsm(code: string, retriable = false, op?: string): HsmError {
  return new HsmError({ code, rv: 5, retriable, message: `secret internal detail ${code}`, op });
}

t.test('registry entries are complete and consistent', async (t) => {
  t.ok(ERROR_CODES.length >= 30, 'the registry has its codes');
  const validGrpc = new Set(Object.values(status).filter((v) => typeof v === 'number'));
  for (const code of ERROR_CODES) {
    const s = ERRORS[code];
    t.match(code, /^[A-Z][A-Z0-9_]+$/, `${code} is UPPER_SNAKE`);
    t.ok(validGrpc.has(s.grpc), `${code} has a real gRPC status`);
    t.not(s.grpc, status.OK, `${code} is not OK`);
    t.ok(s.http >= 400 && s.http <= 599, `${code} has an error HTTP status`);
    t.type(s.retriable, 'boolean');
    t.ok(s.message.length > 0, `${code} has a message`);
  }
  for (const c of [
    'MALFORMED_ENVELOPE',
    'INVALID_CIPHERTEXT',
    'DEK_SIZE',
    'AAD_SIZE',
    'BATCH_TOO_LARGE',
    'KEY_NOT_FOUND',
    'KEY_DISABLED',
    'KEY_DELETED',
    'VERSION_DISABLED',
    'PERMISSION_DENIED',
    'UNAUTHENTICATED',
    'QUEUE_FULL',
    'HSM_UNAVAILABLE',
    'AUDIT_UNAVAILABLE',
    'DEADLINE_EXCEEDED',
    'INTERNAL',
    'KEY_EXISTS',
    'PURGE_PROTECTED',
    'RETENTION_RANGE',
    'DOMAIN_MISMATCH',
    'DOWNGRADE',
    'IMPORT_BLOB_INVALID',
    'POLICY_INVALID',
    'QUORUM_REQUIRED',
  ]) {
    t.ok(isErrorCode(c), `${c} is registered`);
  }
  t.notOk(isErrorCode('toString'), 'prototype names are not codes');
  t.notOk(isErrorCode('NOPE'));
});

t.test('HyokError renders templates and carries metadata', async (t) => {
  const e = new HyokError('DEK_SIZE', { params: { length: 7 }, metadata: { keyName: 'k1' } });
  t.equal(e.message, 'DEK length must be 16, 24 or 32 bytes, got 7');
  t.equal(e.code, 'DEK_SIZE');
  t.equal(e.grpcCode, status.INVALID_ARGUMENT);
  t.equal(e.httpStatus, 400);
  t.equal(e.retriable, false);
  t.same(e.metadata, { length: '7', keyName: 'k1' });
  t.ok(e instanceof Error);
  const missing = new HyokError('AAD_SIZE', { params: { length: 9000 } });
  t.equal(missing.message, 'AAD is 9000 bytes; the limit is ?', 'a missing param never throws');
  t.equal(new HyokError('QUEUE_FULL').retriable, true);
});

t.test('HsmError mapping', async (t) => {
  const cases: [HsmError, string | undefined, string][] = [
    [hsm('HYOKD_QUEUE_FULL', true), undefined, 'QUEUE_FULL'],
    [hsm('HYOKD_HSM_UNAVAILABLE', true), undefined, 'HSM_UNAVAILABLE'],
    [hsm('HYOKD_CLOSED'), undefined, 'HSM_UNAVAILABLE'],
    [hsm('HYOKD_DEADLINE_EXCEEDED'), 'decrypt', 'DEADLINE_EXCEEDED'],
    [hsm('HYOKD_DEADLINE_EXCEEDED', true), undefined, 'DEADLINE_EXCEEDED'],
    [hsm('HYOKD_KEY_AMBIGUOUS'), 'decrypt', 'INTERNAL'],
    [hsm('CKR_DEVICE_ERROR', true), 'decrypt', 'HSM_UNAVAILABLE'],
    [hsm('HYOKD_KEY_NOT_FOUND'), undefined, 'KEY_NOT_FOUND'],
    [hsm('HYOKD_UNSUPPORTED'), undefined, 'UNSUPPORTED'],
    [hsm('CKR_ENCRYPTED_DATA_INVALID'), 'decrypt', 'INVALID_CIPHERTEXT'],
    [hsm('CKR_AEAD_DECRYPT_FAILED'), 'decrypt', 'INVALID_CIPHERTEXT'],
    [hsm('CKR_GENERAL_ERROR'), 'decrypt', 'INVALID_CIPHERTEXT'],
    [hsm('CKR_GENERAL_ERROR', false, 'decrypt'), undefined, 'INVALID_CIPHERTEXT'],
    [hsm('CKR_GENERAL_ERROR'), 'encrypt', 'INTERNAL'],
    [hsm('CKR_GENERAL_ERROR'), 'unwrapKey', 'INTERNAL'],
    [hsm('CKR_GENERAL_ERROR'), undefined, 'INTERNAL'],
    [hsm('CKR_WRAPPED_KEY_INVALID'), 'unwrapKey', 'INVALID_CIPHERTEXT'],
    [hsm('CKR_ENCRYPTED_DATA_INVALID'), 'rsaDecrypt', 'INVALID_CIPHERTEXT'],
    [hsm('CKR_ENCRYPTED_DATA_INVALID'), 'encrypt', 'INTERNAL'],
    [hsm('CKR_KEY_HANDLE_INVALID'), 'decrypt', 'INTERNAL'],
    [hsm('CKR_SOMETHING_NEW'), undefined, 'INTERNAL'],
  ];
  for (const [err, hint, want] of cases) {
    const h = fromHsmError(err, hint);
    t.equal(h.code, want, `${err.code} (${hint ?? err.op ?? 'no op'}) → ${want}`);
    t.notMatch(h.message, /secret internal detail/, 'HSM message never leaks');
    t.equal(h.cause, err, 'the original is kept as cause');
  }
});

t.test('unknown errors never leak their message', async (t) => {
  for (const thrown of [
    new Error('SQLITE_CORRUPT at /var/lib/x'),
    'a string',
    { code: 14, details: 'x' },
    undefined,
  ]) {
    const h = toHyokError(thrown);
    t.equal(h.code, 'INTERNAL');
    t.equal(h.message, 'Internal error');
    const g = toGrpcError(thrown);
    t.equal(g.code, status.INTERNAL);
    t.equal(g.details, 'Internal error');
    t.notMatch(JSON.stringify(g), /SQLITE|string/, 'serialized error holds no detail');
  }
  const known = new HyokError('KEY_DISABLED');
  t.equal(toHyokError(known), known, 'registry errors pass through');
});

t.test('toGrpcError carries google.rpc.Status with ErrorInfo', async (t) => {
  const err = new HyokError('QUORUM_REQUIRED', { metadata: { quorumRequestId: 'q-123' } });
  const g = toGrpcError(err);
  t.equal(g.code, status.FAILED_PRECONDITION);
  t.equal(g.details, err.message);
  t.equal(g.message, err.message);
  t.ok(g.metadata instanceof Metadata);
  const raw = g.metadata!.get('grpc-status-details-bin');
  t.equal(raw.length, 1);
  t.ok(Buffer.isBuffer(raw[0]));
  const decoded = decodeStatusDetails(raw[0] as Buffer);
  t.equal(decoded.code, status.FAILED_PRECONDITION);
  t.equal(decoded.message, err.message);
  t.same(decoded.errorInfo, {
    reason: 'QUORUM_REQUIRED',
    domain: ERROR_DOMAIN,
    metadata: { quorumRequestId: 'q-123' },
  });

  const fromHsm = toGrpcError(hsm('CKR_GENERAL_ERROR'), 'decrypt');
  t.equal(fromHsm.code, status.INVALID_ARGUMENT);
  const d2 = decodeStatusDetails(fromHsm.metadata!.get('grpc-status-details-bin')[0] as Buffer);
  t.equal(d2.errorInfo?.reason, 'INVALID_CIPHERTEXT');
  t.throws(() => decodeStatusDetails(Buffer.from([0xff, 0xff, 0xff])), 'garbage does not decode');
});

t.test('toItemStatus', async (t) => {
  t.same(toItemStatus(new HyokError('BATCH_TOO_LARGE', { params: { count: 5000, limit: 1000 } })), {
    code: status.INVALID_ARGUMENT,
    reason: 'BATCH_TOO_LARGE',
    message: 'Batch has 5000 items; the limit is 1000',
    metadata: { count: '5000', limit: '1000' },
  });
  t.same(toItemStatus(new Error('boom')), {
    code: status.INTERNAL,
    reason: 'INTERNAL',
    message: 'Internal error',
    metadata: {},
  });
});

t.test('errorsTableMarkdown lists every code once', async (t) => {
  const md = errorsTableMarkdown();
  const rows = md.trim().split('\n');
  t.equal(rows.length, ERROR_CODES.length + 2);
  for (const code of ERROR_CODES) t.equal(md.split(`\`${code}\``).length - 1, 1, `${code} appears once`);
  t.match(md, /\| `QUEUE_FULL` \| RESOURCE_EXHAUSTED \(8\) \| 429 \| yes \|/);
});

const readme = join(repoRoot, 'README.md');
t.test(
  'README documents every error code',
  {
    skip: existsSync(readme)
      ? false
      : 'README.md does not exist yet: the error-table check runs once it does',
  },
  async (t) => {
    const text = readFileSync(readme, 'utf8');
    for (const code of ERROR_CODES) {
      t.ok(
        text.includes('`' + code + '`'),
        `README.md documents \`${code}\` (regenerate with errorsTableMarkdown())`,
      );
    }
  },
);
