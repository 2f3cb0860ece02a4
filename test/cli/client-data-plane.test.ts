// Data-plane commands against a real grpc-js server over mutual TLS (real certificates
// from src/pki). The server here is a stub of hyok.v1.Hyok that records what it received
// and answers like the protocol says; the commands' requests, outputs, exit codes and
// error decoding are what is under test. (End-to-end against src/server: see the report.)
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import t from 'tap';
import { CallError, callUnary, createHyokClient, readClientTls } from '../../src/cli/client/index.js';
import { HyokError, toGrpcError, toItemStatus, OK_ITEM_STATUS } from '../../src/errors.js';
import { rewrapDek } from '../../src/rewrap.js';
import { DEV_CLIENT_ID } from '../../src/pki/index.js';
import { jsonLines, makePki, runCli, startStubServer, tempDir, ts } from './client-harness.js';

const ENV_PREFIX = Buffer.from('ENV:');
/** The stub's "envelope": a prefix, the key name, a separator, then the DEK. Tests only. */
const fakeEnvelope = (key: string, dek: Buffer): Buffer =>
  Buffer.concat([ENV_PREFIX, Buffer.from(key + '|'), dek]);
function openFake(env: Buffer): { key: string; dek: Buffer } {
  if (!env.subarray(0, 4).equals(ENV_PREFIX))
    throw new HyokError('MALFORMED_ENVELOPE', { params: { detail: 'bad magic' } });
  const bar = env.indexOf('|');
  return { key: env.subarray(4, bar).toString(), dek: Buffer.from(env.subarray(bar + 1)) };
}

async function setup(t: Parameters<typeof makePki>[0]) {
  const pki = await makePki(t);
  const lastDek: { value?: Buffer } = {};
  const server = await startStubServer(t, pki, {
    hyok: {
      Echo: (req) => ({ payload: req.payload }),
      GenerateDataKey: (req) => {
        if (req.keyName === 'disabled') throw toGrpcError(new HyokError('KEY_DISABLED'));
        const dek = randomBytes(req.dekLength || 32);
        lastDek.value = Buffer.from(dek);
        const envelope = fakeEnvelope(req.keyName, dek);
        if (req.rewrap) {
          const r = rewrapDek(dek, {
            algorithm: req.rewrap.algorithm,
            recipientPublicKey: req.rewrap.recipientPublicKey,
          });
          return { envelope, keyName: req.keyName, keyVersion: 3, rewrapped: r };
        }
        return { plaintextDek: dek, envelope, keyName: req.keyName, keyVersion: 3 };
      },
      Wrap: (req) => {
        if (req.keyName === 'slow') return new Promise((r) => setTimeout(() => r({}), 1000));
        return { envelope: fakeEnvelope(req.keyName, req.plaintextDek), keyName: req.keyName, keyVersion: 2 };
      },
      Unwrap: (req) => {
        let opened;
        try {
          opened = openFake(req.envelope);
        } catch (e) {
          throw toGrpcError(e);
        }
        if (req.aad.toString() !== 'ctx-1') throw toGrpcError(new HyokError('INVALID_CIPHERTEXT'));
        if (req.rewrap) {
          return { keyName: opened.key, keyVersion: 1, rewrapped: rewrapDek(opened.dek, req.rewrap) };
        }
        return { plaintextDek: opened.dek, keyName: opened.key, keyVersion: 1 };
      },
      BatchWrap: (req) => ({
        results: req.items.map((it: { keyName: string; plaintextDek: Buffer }) =>
          it.keyName === 'disabled'
            ? { status: toItemStatus(new HyokError('KEY_DISABLED')), result: null }
            : {
                status: OK_ITEM_STATUS,
                result: {
                  envelope: fakeEnvelope(it.keyName, it.plaintextDek),
                  keyName: it.keyName,
                  keyVersion: 1,
                },
              },
        ),
      }),
      BatchUnwrap: (req) => ({
        results: req.items.map((it: { envelope: Buffer }) => {
          try {
            const o = openFake(it.envelope);
            return { status: OK_ITEM_STATUS, result: { plaintextDek: o.dek, keyName: o.key, keyVersion: 1 } };
          } catch (e) {
            return { status: toItemStatus(e), result: null };
          }
        }),
      }),
      GetKey: (req) => {
        if (req.name === 'missing') throw toGrpcError(new HyokError('KEY_NOT_FOUND'));
        return {
          key: {
            name: req.name,
            state: 'ENABLED',
            algorithm: 'AES_256',
            primaryVersion: 2,
            versions: [
              { version: 1, state: 'DISABLED', createdTime: ts('2026-01-01T00:00:00Z') },
              { version: 2, state: 'ENABLED', createdTime: ts('2026-06-01T00:00:00Z') },
            ],
          },
        };
      },
    },
  });
  const conn = ['--endpoint', server.endpoint];
  const env = { HYOKD_HOME: pki.dir };
  return { pki, server, conn, env, lastDek };
}

t.test('client factory: Echo over mutual TLS with the bundle identity', async (t) => {
  const { pki, server } = await setup(t);
  const tls = await readClientTls({ bundle: pki.clientBundle });
  const client = createHyokClient({ endpoint: server.endpoint, tls });
  t.teardown(() => client.close());
  const payload = randomBytes(100);
  const res = await callUnary<{ payload: Buffer }>(client, 'Echo', { payload }, { timeoutMs: 5000 });
  t.same(res.payload, payload);
  t.match(server.peers.at(-1), DEV_CLIENT_ID, 'the server saw the client certificate identity');
  const md = new Metadata();
  md.set('x-test', '1');
  const res2 = await callUnary<{ payload: Buffer }>(
    client,
    'Echo',
    { payload: Buffer.alloc(0) },
    { timeoutMs: 5000, metadata: md },
  );
  t.equal(res2.payload.length, 0);
  await t.rejects(callUnary(client, 'NoSuchMethod', {}, { timeoutMs: 100 }), /unknown method NoSuchMethod/);
});

t.test('client factory: separate files, and a bundle from a foreign CA fails the handshake', async (t) => {
  const { pki, server } = await setup(t);
  const tls = await readClientTls({ cert: pki.clientCert, key: pki.clientKey, ca: pki.caFile });
  const ok = createHyokClient({ endpoint: server.endpoint, tls });
  t.teardown(() => ok.close());
  await callUnary(ok, 'Echo', { payload: Buffer.from('x') }, { timeoutMs: 5000 });
  const bad = createHyokClient({
    endpoint: server.endpoint,
    tls: await readClientTls({ bundle: pki.foreignBundle }),
  });
  t.teardown(() => bad.close());
  const err = await callUnary(bad, 'Echo', { payload: Buffer.from('x') }, { timeoutMs: 3000 }).catch(
    (e: unknown) => e,
  );
  t.type(err, CallError);
  t.equal((err as CallError).status, 'UNAVAILABLE');
  t.equal((err as CallError).reason, '', 'no ErrorInfo from a failed handshake');
  await t.rejects(readClientTls({ cert: pki.clientCert, key: pki.clientKey }), /missing ca/);
  await t.rejects(
    readClientTls({ cert: pki.clientCert, key: pki.caFile, ca: pki.caFile }),
    /holds no PRIVATE KEY/,
  );
});

t.test('generate-data-key prints the DEK and envelope; the request carries the flags', async (t) => {
  const { server, conn, env, lastDek } = await setup(t);
  const r = await runCli(
    [
      'generate-data-key',
      '--key',
      'payments',
      '--length',
      '16',
      '--aad',
      'order-7',
      '--reason',
      'nightly',
      '--request-id',
      'req-1',
      '--context',
      'tenant=acme',
      ...conn,
    ],
    { env },
  );
  t.equal(r.code, 0, r.stderr);
  const req = server.calls.GenerateDataKey![0];
  t.equal(req.keyName, 'payments');
  t.equal(req.dekLength, 16);
  t.equal(req.aad.toString(), 'order-7');
  t.equal(req.requestId, 'req-1');
  t.same(req.context, { tenant: 'acme', reason: 'nightly' });
  t.equal(req.rewrap, null);
  t.match(r.stdout, /^key: payments@3$/m);
  t.match(
    r.stdout,
    new RegExp(`^plaintext-dek: ${lastDek.value!.toString('base64').replace(/[+/]/g, '\\$&')}$`, 'm'),
  );
  t.match(r.stdout, /^envelope: [A-Za-z0-9+/=]+$/m);

  const j = await runCli(['generate-data-key', '--key', 'payments', '--json', ...conn], { env });
  t.equal(j.code, 0);
  const out = JSON.parse(j.stdout) as Record<string, unknown>;
  t.same(Object.keys(out).sort(), ['envelope', 'keyName', 'keyVersion', 'plaintextDek']);
  t.equal(Buffer.from(out.plaintextDek as string, 'base64').length, 32, 'default length 32');
  t.equal(out.keyVersion, 3);
  const env2 = Buffer.from(out.envelope as string, 'base64');
  t.same(openFake(env2).dek, Buffer.from(out.plaintextDek as string, 'base64'));
});

t.test('a failed call exits 1 with the ErrorInfo reason and safe message', async (t) => {
  const { conn, env } = await setup(t);
  const r = await runCli(['generate-data-key', '--key', 'disabled', ...conn], { env });
  t.equal(r.code, 1);
  t.match(r.stderr, /error: KEY_DISABLED \(FAILED_PRECONDITION 9\): The key is disabled/);
  t.equal(r.stdout, '');
  const j = await runCli(['generate-data-key', '--key', 'disabled', '--json', ...conn], { env });
  t.equal(j.code, 1);
  t.same(JSON.parse(j.stdout), {
    error: {
      code: 9,
      status: 'FAILED_PRECONDITION',
      reason: 'KEY_DISABLED',
      message: 'The key is disabled',
      metadata: {},
    },
  });
  const nf = await runCli(['get-key', 'missing', ...conn], { env });
  t.equal(nf.code, 1);
  t.match(nf.stderr, /KEY_NOT_FOUND \(NOT_FOUND 5\): Key not found/);
  const m = await runCli(
    ['unwrap', '--envelope-base64', Buffer.from('XXXXjunk').toString('base64'), ...conn],
    { env },
  );
  t.equal(m.code, 1);
  t.match(m.stderr, /MALFORMED_ENVELOPE \(INVALID_ARGUMENT 3\): Malformed envelope: bad magic/);
  t.match(m.stderr, /detail: bad magic/, 'ErrorInfo metadata is shown');
});

t.test('no server listening: exit 1, UNAVAILABLE', async (t) => {
  const { pki } = await setup(t);
  const r = await runCli(['get-key', 'k', '--endpoint', '127.0.0.1:1', '--timeout', '2000'], {
    env: { HYOKD_HOME: pki.dir },
  });
  t.equal(r.code, 1);
  t.match(r.stderr, /UNAVAILABLE|DEADLINE_EXCEEDED/);
});

t.test('--timeout bounds the call', async (t) => {
  const { conn, env } = await setup(t);
  const start = Date.now();
  const r = await runCli(
    [
      'wrap',
      '--key',
      'slow',
      '--dek-base64',
      Buffer.alloc(32).toString('base64'),
      '--timeout',
      '100',
      ...conn,
    ],
    { env },
  );
  t.equal(r.code, 1);
  t.match(r.stderr, /DEADLINE_EXCEEDED/);
  t.ok(Date.now() - start < 900, 'did not wait for the slow handler');
});

t.test('wrap from a file, then unwrap with the same AAD', async (t) => {
  const { pki, server, conn, env } = await setup(t);
  const dir = tempDir(t);
  const dek = randomBytes(24);
  writeFileSync(join(dir, 'dek.bin'), dek);
  const w = await runCli(
    ['wrap', '--key', 'vault', '--dek-file', join(dir, 'dek.bin'), '--aad', 'ctx-1', '--json', ...conn],
    { env },
  );
  t.equal(w.code, 0, w.stderr);
  t.same(server.calls.Wrap![0].plaintextDek, dek, 'the DEK went out as given');
  const wr = JSON.parse(w.stdout) as { envelope: string; keyName: string; keyVersion: number };
  t.same({ keyName: wr.keyName, keyVersion: wr.keyVersion }, { keyName: 'vault', keyVersion: 2 });
  t.notMatch(
    w.stdout,
    new RegExp(dek.toString('base64').replace(/[+/]/g, '\\$&')),
    'wrap does not print the DEK',
  );

  // Separate cert/key/ca files instead of the bundle, and --aad-base64 for the same bytes.
  const u = await runCli(
    [
      'unwrap',
      '--envelope-base64',
      wr.envelope,
      '--aad-base64',
      Buffer.from('ctx-1').toString('base64'),
      '--cert',
      pki.clientCert,
      '--cert-key',
      pki.clientKey,
      '--ca',
      pki.caFile,
      ...conn,
    ],
    { env: {} },
  );
  t.equal(u.code, 0, u.stderr);
  t.match(u.stdout, /^key: vault@1$/m);
  t.match(u.stdout, `plaintext-dek: ${dek.toString('base64')}`);
  const bad = await runCli(['unwrap', '--envelope-base64', wr.envelope, '--aad', 'ctx-2', ...conn], { env });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /INVALID_CIPHERTEXT/);
});

t.test(
  'rewrap: the DEK comes back encrypted to my key, and opens locally with the private key',
  async (t) => {
    const { server, conn, env, lastDek } = await setup(t);
    const dir = tempDir(t);
    for (const [kind, opts, alg] of [
      ['rsa', { modulusLength: 2048 }, 'RSA_OAEP_SHA256'],
      ['ec', { namedCurve: 'prime256v1' }, 'ECDH_P256_HKDF_SHA256_AES_KWP'],
    ] as const) {
      const pair = generateKeyPairSync(kind as 'rsa', opts as { modulusLength: number });
      const pub = join(dir, `${kind}.pub.pem`);
      const priv = join(dir, `${kind}.key.pem`);
      writeFileSync(pub, pair.publicKey.export({ format: 'pem', type: 'spki' }));
      writeFileSync(priv, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }));

      const only = await runCli(['generate-data-key', '--key', 'k', '--rewrap-to', pub, '--json', ...conn], {
        env,
      });
      t.equal(only.code, 0, only.stderr);
      const o = JSON.parse(only.stdout) as Record<string, unknown>;
      t.notOk('plaintextDek' in o, `${kind}: no plaintext DEK without the private key`);
      t.match(o.rewrapped, { algorithm: alg });
      const req = server.calls.GenerateDataKey!.at(-1);
      t.equal(req.rewrap.algorithm, alg, `${kind}: algorithm inferred from the key type`);
      t.same(req.rewrap.recipientPublicKey, pair.publicKey.export({ format: 'der', type: 'spki' }));

      const opened = await runCli(
        ['generate-data-key', '--key', 'k', '--rewrap-private-key', priv, ...conn],
        { env },
      );
      t.equal(opened.code, 0, opened.stderr);
      t.match(
        opened.stdout,
        `plaintext-dek: ${lastDek.value!.toString('base64')}`,
        `${kind}: opened locally`,
      );
      t.notMatch(opened.stdout, /PRIVATE KEY/);
    }
    const rsa = join(dir, 'rsa.pub.pem');
    const wrongAlg = await runCli(
      ['generate-data-key', '--key', 'k', '--rewrap-to', rsa, '--rewrap-alg', 'ecdh-p256', ...conn],
      { env },
    );
    t.equal(wrongAlg.code, 1, 'the server refuses a key that does not fit the algorithm');
    const privAsPub = await runCli(
      ['generate-data-key', '--key', 'k', '--rewrap-to', join(dir, 'ec.key.pem'), ...conn],
      { env },
    );
    t.equal(privAsPub.code, 2);
    t.match(privAsPub.stderr, /--rewrap-to: the file holds a private key/);
    const mismatch = await runCli(
      [
        'generate-data-key',
        '--key',
        'k',
        '--rewrap-to',
        rsa,
        '--rewrap-private-key',
        join(dir, 'ec.key.pem'),
        ...conn,
      ],
      { env },
    );
    t.equal(mismatch.code, 2);
    t.match(mismatch.stderr, /--rewrap-private-key does not match the public key of --rewrap-to/);

    // unwrap with rewrap, opened locally
    const dek = randomBytes(32);
    const envB64 = fakeEnvelope('k', dek).toString('base64');
    const u = await runCli(
      [
        'unwrap',
        '--envelope-base64',
        envB64,
        '--aad',
        'ctx-1',
        '--rewrap-private-key',
        join(dir, 'ec.key.pem'),
        '--json',
        ...conn,
      ],
      { env },
    );
    t.equal(u.code, 0, u.stderr);
    const uj = JSON.parse(u.stdout) as { plaintextDek: string; rewrapped: { algorithm: string } };
    t.equal(uj.plaintextDek, dek.toString('base64'));
    t.equal(uj.rewrapped.algorithm, 'ECDH_P256_HKDF_SHA256_AES_KWP');
  },
);

t.test(
  'batch-wrap: one result line per item in order, calls of --batch-size, exit 1 when an item failed',
  async (t) => {
    const { server, conn, env } = await setup(t);
    const deks = [randomBytes(32), randomBytes(16), randomBytes(32)];
    const stdin = [
      JSON.stringify({ key: 'a', dekBase64: deks[0]!.toString('base64') }),
      '',
      JSON.stringify({ key: 'disabled', dekBase64: deks[1]!.toString('base64'), aad: 'x' }),
      JSON.stringify({ key: 'b', dekBase64: deks[2]!.toString('base64'), aadBase64: 'eHl6' }),
    ].join('\n');
    const r = await runCli(['batch-wrap', '--batch-size', '2', '--json', ...conn], { env, stdin });
    t.equal(r.code, 1, 'one item failed');
    t.equal(server.calls.BatchWrap!.length, 2, 'two calls of at most 2 items');
    t.equal(server.calls.BatchWrap![0].items.length, 2);
    t.equal(server.calls.BatchWrap![1].items[0].aad.toString(), 'xyz');
    const lines = jsonLines(r.stdout) as Record<string, unknown>[];
    t.equal(lines.length, 3);
    t.match(lines[0], { index: 0, ok: true, keyName: 'a', keyVersion: 1 });
    t.same(openFake(Buffer.from(lines[0]!.envelopeBase64 as string, 'base64')).dek, deks[0]);
    t.same(lines[1], {
      index: 1,
      ok: false,
      code: 9,
      status: 'FAILED_PRECONDITION',
      reason: 'KEY_DISABLED',
      message: 'The key is disabled',
      metadata: {},
    });
    t.match(lines[2], { index: 2, ok: true, keyName: 'b' });

    const h = await runCli(['batch-wrap', ...conn], { env, stdin });
    t.match(h.stdout, /^0 ok a@1 /m);
    t.match(h.stdout, /^1 FAILED KEY_DISABLED: The key is disabled$/m);
  },
);

t.test('batch-unwrap from a file: all ok exits 0 and prints each DEK', async (t) => {
  const { conn, env } = await setup(t);
  const dir = tempDir(t);
  const deks = [randomBytes(32), randomBytes(32)];
  const file = join(dir, 'in.jsonl');
  writeFileSync(
    file,
    deks.map((d) => JSON.stringify({ envelopeBase64: fakeEnvelope('k', d).toString('base64') })).join('\n') +
      '\n',
  );
  const r = await runCli(['batch-unwrap', '--input', file, '--json', ...conn], { env });
  t.equal(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout) as { index: number; ok: boolean; dekBase64: string }[];
  t.same(
    lines.map((l) => [l.index, l.ok, l.dekBase64]),
    deks.map((d, i) => [i, true, d.toString('base64')]),
  );
  writeFileSync(file, JSON.stringify({ envelopeBase64: Buffer.from('nope').toString('base64') }) + '\n');
  const bad = await runCli(['batch-unwrap', '--input', file, '--json', ...conn], { env });
  t.equal(bad.code, 1);
  t.match(jsonLines(bad.stdout)[0], { index: 0, ok: false, reason: 'MALFORMED_ENVELOPE' });
});

t.test('get-key prints the public metadata', async (t) => {
  const { conn, env } = await setup(t);
  const r = await runCli(['get-key', 'payments', ...conn], { env });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /key: +payments/);
  t.match(r.stdout, /v1 +DISABLED +created 2026-01-01T00:00:00.000Z/);
  const j = await runCli(['get-key', 'payments', '--json', ...conn], { env });
  const k = JSON.parse(j.stdout) as Record<string, unknown>;
  t.match(k, { name: 'payments', state: 'ENABLED', algorithm: 'AES_256', primaryVersion: 2 });
  t.same(
    (k.versions as { createdTime: string }[]).map((v) => v.createdTime),
    ['2026-01-01T00:00:00.000Z', '2026-06-01T00:00:00.000Z'],
  );
  t.equal(k.publicKeySpki, '', 'empty bytes as an empty base64 string');
});

t.test('the default bundle comes from $HYOKD_HOME/pki and $HYOKD_ENDPOINT', async (t) => {
  const { pki, server } = await setup(t);
  const r = await runCli(['get-key', 'x'], { env: { HYOKD_HOME: pki.dir, HYOKD_ENDPOINT: server.endpoint } });
  t.equal(r.code, 0, r.stderr);
  const rel = await runCli(['get-key', 'x'], {
    env: { HYOKD_HOME: 'h', HYOKD_ENDPOINT: server.endpoint },
    cwd: pki.dir,
  });
  t.equal(rel.code, 2, 'a relative HYOKD_HOME resolves against the working directory');
  t.match(rel.stderr, new RegExp(`no client bundle at ${pki.dir}/h/pki/client.bundle.pem`));
});
