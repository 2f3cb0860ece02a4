// `hyokd keys …`, `policy show|explain` and the BYOK flow (import-key → byok pack →
// keys import) against a real grpc-js server over mutual TLS with a stub KeyAdmin
// service: requests built from the flags, outputs, quorum handling, files written.
import { constants, createDecipheriv, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { HyokError, toGrpcError } from '../../src/errors.js';
import { parseImportBlob } from '../../src/keys/index.js';
import { DEV_ADMIN_ID } from '../../src/pki/index.js';
import { makePki, runCli, startStubServer, tempDir, ts } from './client-harness.js';

function key(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    kind: 'AES_256',
    state: 'ENABLED',
    primaryVersion: 1,
    versions: [
      {
        version: 1,
        state: 'VERSION_ENABLED',
        createdTime: ts('2026-03-01T10:00:00Z'),
        origin: 'GENERATED',
        publicKeySpki: Buffer.alloc(0),
        hsmObjectId: '01ab',
      },
    ],
    allowedOperations: ['WRAP_KEY', 'UNWRAP_KEY'],
    tags: { env: 'prod' },
    retentionDays: 90,
    purgeProtection: false,
    rotationPolicy: null,
    createdTime: ts('2026-03-01T10:00:00Z'),
    updatedTime: ts('2026-03-02T10:00:00Z'),
    deletedTime: null,
    scheduledPurgeTime: null,
    ...extra,
  };
}

const exchange = generateKeyPairSync('rsa', { modulusLength: 3072 });
const BACKUP = randomBytes(300);

const DOMAIN = {
  domainId: '6f1c1a52-0d5e-4f0e-9a43-2b7d3c1e9f10',
  backupKeyId: '0a1b2c3d',
  boundTime: ts('2026-03-01T09:00:00Z'),
};

async function setup(t: Parameters<typeof makePki>[0]) {
  const pki = await makePki(t);
  const imported: Buffer[] = [];
  let bound = false;
  const server = await startStubServer(t, pki, {
    admin: {
      EnablePurgeProtection: (req) => ({ key: key(req.name, { purgeProtection: true }) }),
      GetSecurityDomain: () => ({ domain: bound ? DOMAIN : null }),
      InitSecurityDomain: () => {
        const created = !bound;
        bound = true;
        return { domain: DOMAIN, created };
      },
      JoinSecurityDomain: (req) => {
        if (bound) throw toGrpcError(new HyokError('DOMAIN_BOUND'));
        bound = true;
        return { domain: { ...DOMAIN, domainId: req.domainId, backupKeyId: req.backupKeyId } };
      },
      CreateKey: (req) =>
        req.name === 'taken'
          ? Promise.reject(toGrpcError(new HyokError('KEY_EXISTS')))
          : {
              key: key(req.name, {
                kind: req.kind,
                allowedOperations: req.allowedOperations,
                tags: req.tags,
                retentionDays: req.retentionDays || 90,
                purgeProtection: req.purgeProtection,
                rotationPolicy: req.rotationPolicy,
              }),
            },
      ListKeys: (req) =>
        req.pageToken === ''
          ? { keys: [key('alpha'), key('beta')], nextPageToken: 'p2' }
          : { keys: [key('gamma', { state: 'DELETED' })], nextPageToken: '' },
      GetKey: (req) => ({ key: key(req.name) }),
      RotateKey: (req) => ({ key: key(req.name, { primaryVersion: 2 }), newVersion: 2 }),
      SetKeyState: (req) => ({ key: key(req.name, { state: req.enabled ? 'ENABLED' : 'DISABLED' }) }),
      DeleteKey: (req) => {
        if (req.context.quorum_request_id !== 'q-77') {
          throw toGrpcError(new HyokError('QUORUM_REQUIRED', { metadata: { quorumRequestId: 'q-77' } }));
        }
        return {
          key: key(req.name, {
            state: 'DELETED',
            deletedTime: ts('2026-04-01T00:00:00Z'),
            scheduledPurgeTime: ts('2026-06-30T00:00:00Z'),
          }),
        };
      },
      RecoverKey: (req) => ({ key: key(req.name) }),
      PurgeKey: (req) => ({ name: req.name, purgedTime: ts('2026-07-01T00:00:00Z') }),
      AdoptKey: (req) => ({ key: key(req.name, { kind: req.kind }) }),
      BackupKey: () => ({ backup: BACKUP, securityDomain: 'dom-1' }),
      RestoreKey: (req) => {
        if (!req.backup.equals(BACKUP)) throw toGrpcError(new HyokError('DOMAIN_MISMATCH'));
        return { key: key('restored') };
      },
      CreateImportKey: () => ({
        importKeyId: 'imp-1',
        publicKeySpki: exchange.publicKey.export({ format: 'der', type: 'spki' }),
        supportedAlgorithms: ['RSA_AES_KEY_WRAP_SHA1'],
        expireTime: ts('2026-03-01T11:00:00Z'),
      }),
      ImportKey: (req) => {
        // Open the blob the way an HSM would (CKM_RSA_AES_KEY_WRAP behind the hyokd header).
        const parsed = parseImportBlob(req.wrappedKeyMaterial);
        if (!parsed) throw toGrpcError(new HyokError('IMPORT_BLOB_INVALID'));
        const eph = privateDecrypt(
          { key: exchange.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: parsed.hash },
          parsed.payload.subarray(0, 384),
        );
        const d = createDecipheriv('id-aes256-wrap-pad', eph, Buffer.from('a65959a6', 'hex'));
        imported.push(Buffer.concat([d.update(parsed.payload.subarray(384)), d.final()]));
        return { key: key(req.name, { origin: 'IMPORTED' }), version: 1 };
      },
      SetTags: (req) => ({
        key: key(req.name, { tags: req.replace ? req.tags : { env: 'prod', ...req.tags } }),
      }),
      SetRotationPolicy: (req) => ({ key: key(req.name, { rotationPolicy: req.rotationPolicy }) }),
      SetPolicy: (req) => {
        if (req.etag !== '' && req.etag !== 'e-5') throw toGrpcError(new HyokError('ETAG_MISMATCH'));
        return {
          policy: {
            document: req.document,
            etag: 'e-6',
            updatedTime: ts('2026-02-02T00:00:00Z'),
            updatedBy: DEV_ADMIN_ID,
          },
        };
      },
      GetPolicy: () => ({
        policy: {
          document: 'version: 1\n',
          etag: 'e-5',
          updatedTime: ts('2026-02-01T00:00:00Z'),
          updatedBy: DEV_ADMIN_ID,
        },
      }),
      ExplainPolicy: (req) => ({
        allowed: false,
        decidedBy: 'deny[0]',
        explanation: `denied: ${req.identity} ${req.operation}`,
        quorumRequired: true,
        quorumApprovals: 2,
        quorumOperations: ['PurgeKey'],
        trace: [
          { rule: 'deny[0]', matched: true, note: 'purge is denied' },
          { rule: 'binding[0]:admin', matched: false, note: '' },
        ],
      }),
    },
  });
  return { pki, server, conn: ['--endpoint', server.endpoint], env: { HYOKD_HOME: pki.dir }, imported };
}

t.test('keys create: flags become the request; the admin bundle is the default identity', async (t) => {
  const { server, conn, env } = await setup(t);
  const r = await runCli(
    [
      'keys',
      'create',
      'payments',
      '--kind',
      'aes-256',
      '--ops',
      'wrapKey,unwrapKey,WRAP_KEY',
      '--tag',
      'env=prod',
      '--tag',
      'team=pay',
      '--retention-days',
      '30',
      '--purge-protection',
      '--rotate-after',
      '90d',
      '--reason',
      'CHG-1',
      ...conn,
    ],
    { env },
  );
  t.equal(r.code, 0, r.stderr);
  const req = server.calls.CreateKey![0];
  t.match(req, {
    name: 'payments',
    kind: 'AES_256',
    allowedOperations: ['WRAP_KEY', 'UNWRAP_KEY'],
    tags: { env: 'prod', team: 'pay' },
    retentionDays: 30,
    purgeProtection: true,
    rotationPolicy: { rotateAfter: { seconds: '7776000', nanos: 0 } },
    context: { reason: 'CHG-1' },
  });
  t.match(server.peers.at(-1), DEV_ADMIN_ID);
  t.match(r.stdout, /key: +payments/);
  t.match(r.stdout, /operations: +wrapKey, unwrapKey/);
  t.match(r.stdout, /retention: +30 days, purge protection on/);
  t.match(r.stdout, /rotation: +every 90d/);
  t.match(r.stdout, /v1 +ENABLED +GENERATED +created 2026-03-01T10:00:00.000Z +hsm-id 01ab/);

  const j = await runCli(['keys', 'create', 'k2', '--kind', 'ec-p256', '--json', ...conn], { env });
  t.equal(j.code, 0);
  const out = JSON.parse(j.stdout) as { key: Record<string, unknown> };
  t.match(out.key, {
    name: 'k2',
    kind: 'EC_P256',
    retentionDays: 90,
    createdTime: '2026-03-01T10:00:00.000Z',
    deletedTime: null,
  });
  t.same(server.calls.CreateKey![1].allowedOperations, [], 'no --ops: the kind defaults');
  t.equal(server.calls.CreateKey![1].rotationPolicy, null);

  const taken = await runCli(['keys', 'create', 'taken', '--kind', 'aes-256', ...conn], { env });
  t.equal(taken.code, 1);
  t.match(taken.stderr, /KEY_EXISTS \(ALREADY_EXISTS 6\)/);
});

t.test('keys list follows every page', async (t) => {
  const { server, conn, env } = await setup(t);
  const r = await runCli(
    ['keys', 'list', '--include-deleted', '--tag', 'env=prod', '--page-size', '2', ...conn],
    { env },
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(server.calls.ListKeys!.length, 2);
  t.match(server.calls.ListKeys![0], {
    pageSize: 2,
    pageToken: '',
    includeDeleted: true,
    tagFilter: { env: 'prod' },
  });
  t.equal(server.calls.ListKeys![1].pageToken, 'p2');
  t.same(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split('\t')[0]),
    ['alpha', 'beta', 'gamma'],
  );
  t.match(r.stdout, /gamma\taes-256\tDELETED/);
  const j = await runCli(['keys', 'list', '--json', ...conn], { env });
  t.same(
    (JSON.parse(j.stdout) as { keys: { name: string }[] }).keys.map((k) => k.name),
    ['alpha', 'beta', 'gamma'],
  );
});

t.test('keys get / rotate / enable / disable --version / recover / purge / adopt', async (t) => {
  const { server, conn, env } = await setup(t);
  const g = await runCli(['keys', 'get', 'a', ...conn], { env });
  t.equal(g.code, 0);
  t.equal(server.calls.GetKey![0].name, 'a');
  const rot = await runCli(['keys', 'rotate', 'a', '--json', ...conn], { env });
  t.match(JSON.parse(rot.stdout), { newVersion: 2, key: { primaryVersion: 2 } });
  const rh = await runCli(['keys', 'rotate', 'a', ...conn], { env });
  t.match(rh.stdout, /^new version: v2$/m);
  const dis = await runCli(['keys', 'disable', 'a', '--version', '1', ...conn], { env });
  t.equal(dis.code, 0);
  t.match(server.calls.SetKeyState![0], { name: 'a', enabled: false, version: 1 });
  t.match(dis.stdout, /state: +DISABLED/);
  const en = await runCli(['keys', 'enable', 'a', ...conn], { env });
  t.equal(en.code, 0);
  t.equal(server.calls.SetKeyState![1].enabled, true);
  t.equal(server.calls.SetKeyState![1].version, undefined, 'no --version: the whole key (field absent)');
  const rec = await runCli(['keys', 'recover', 'a', ...conn], { env });
  t.equal(rec.code, 0);
  const p = await runCli(['keys', 'purge', 'a', ...conn], { env });
  t.equal(p.stdout.trim(), 'purged a at 2026-07-01T00:00:00.000Z');
  const pj = await runCli(['keys', 'purge', 'a', '--json', ...conn], { env });
  t.same(JSON.parse(pj.stdout), { name: 'a', purgedTime: '2026-07-01T00:00:00.000Z' });
  const ad = await runCli(['keys', 'adopt', 'legacy', '--kind', 'rsa-3072', '--hsm-id', '0A0b', ...conn], {
    env,
  });
  t.equal(ad.code, 0, ad.stderr);
  t.match(server.calls.AdoptKey![0], { name: 'legacy', kind: 'RSA_3072', selector: 'hsmObjectId' });
  t.same(server.calls.AdoptKey![0].hsmObjectId, Buffer.from([0x0a, 0x0b]));
  const al = await runCli(
    ['keys', 'adopt', 'legacy2', '--kind', 'aes-256', '--hsm-label', 'old kek', ...conn],
    { env },
  );
  t.equal(al.code, 0);
  t.match(server.calls.AdoptKey![1], { hsmLabel: 'old kek', selector: 'hsmLabel' });
  t.notOk(server.calls.AdoptKey![1].allowExtractable, 'not asked: not sent');
  const ax = await runCli(
    [
      'keys',
      'adopt',
      'legacy3',
      '--kind',
      'aes-256',
      '--hsm-label',
      'old kek',
      '--allow-extractable',
      ...conn,
    ],
    { env },
  );
  t.equal(ax.code, 0, ax.stderr);
  t.equal(server.calls.AdoptKey![2].allowExtractable, true);
});

t.test('quorum: the error names the request id, and --quorum-request-id repeats the call', async (t) => {
  const { server, conn, env } = await setup(t);
  const first = await runCli(['keys', 'delete', 'a', ...conn], { env });
  t.equal(first.code, 1);
  t.match(first.stderr, /QUORUM_REQUIRED \(FAILED_PRECONDITION 9\)/);
  t.match(first.stderr, /quorumRequestId: q-77/);
  t.match(first.stderr, /repeat the command with --quorum-request-id q-77/);
  const again = await runCli(['keys', 'delete', 'a', '--quorum-request-id', 'q-77', ...conn], { env });
  t.equal(again.code, 0, again.stderr);
  t.equal(server.calls.DeleteKey![1].context.quorum_request_id, 'q-77');
  t.match(again.stdout, /state: +DELETED/);
  t.match(again.stdout, /purge after: 2026-06-30T00:00:00.000Z/);
  const clash = await runCli(
    ['keys', 'delete', 'a', '--quorum-request-id', 'q', '--context', 'quorum_request_id=q', ...conn],
    { env },
  );
  t.equal(clash.code, 2);
});

t.test('keys backup writes the blob 0600 and refuses to overwrite; restore reads it', async (t) => {
  const { server, conn, env } = await setup(t);
  const dir = tempDir(t);
  const out = join(dir, 'a.backup');
  const b = await runCli(['keys', 'backup', 'a', '--out', out, ...conn], { env });
  t.equal(b.code, 0, b.stderr);
  t.same(readFileSync(out), BACKUP);
  t.equal(statSync(out).mode & 0o777, 0o600);
  t.match(b.stdout, /300 bytes, security domain dom-1/);
  const again = await runCli(['keys', 'backup', 'a', '--out', out, ...conn], { env });
  t.equal(again.code, 2);
  t.match(again.stderr, /--out: .* exists; remove it or pass --force/);
  const forced = await runCli(['keys', 'backup', 'a', '--out', out, '--force', '--json', ...conn], { env });
  t.same(JSON.parse(forced.stdout), { name: 'a', file: out, bytes: 300, securityDomain: 'dom-1' });
  const r = await runCli(['keys', 'restore', out, ...conn], { env });
  t.equal(r.code, 0, r.stderr);
  t.same(server.calls.RestoreKey![0].backup, BACKUP);
  writeFileSync(out, Buffer.from('other domain'));
  const bad = await runCli(['keys', 'restore', out, ...conn], { env });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /DOMAIN_MISMATCH/);
});

t.test(
  'BYOK: import-key saves the exchange key, byok pack wraps offline, keys import sends the blob',
  async (t) => {
    const { server, conn, env, imported } = await setup(t);
    const dir = tempDir(t);
    const pub = join(dir, 'exch.pem');
    const ik = await runCli(['keys', 'import-key', '--out', pub, ...conn], { env });
    t.equal(ik.code, 0, ik.stderr);
    t.equal(server.calls.CreateImportKey![0].kind, 'RSA_3072');
    t.match(ik.stdout, /import key id: imp-1/);
    t.match(ik.stdout, /expires: +2026-03-01T11:00:00.000Z/);
    t.match(readFileSync(pub, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);

    const material = randomBytes(32);
    const matFile = join(dir, 'material.bin');
    writeFileSync(matFile, material);
    const blob = join(dir, 'blob.bin');
    const pk = await runCli(['byok', 'pack', '--public-key', pub, '--key-file', matFile, '--out', blob]);
    t.equal(pk.code, 0, pk.stderr);
    t.match(pk.stdout, /--wrap-alg rsa-aes-kw-sha1/);
    t.notMatch(pk.stdout, new RegExp(material.toString('base64').replace(/[+/]/g, '\\$&')));
    t.equal(statSync(blob).mode & 0o777, 0o600);
    const twice = await runCli(['byok', 'pack', '--public-key', pub, '--key-file', matFile, '--out', blob]);
    t.equal(twice.code, 2, 'does not overwrite');

    const im = await runCli(
      [
        'keys',
        'import',
        'byok-1',
        '--kind',
        'aes-256',
        '--import-key-id',
        'imp-1',
        '--blob',
        blob,
        '--wrap-alg',
        'rsa-aes-kw-sha1',
        '--ops',
        'wrapKey',
        ...conn,
      ],
      { env },
    );
    t.equal(im.code, 0, im.stderr);
    t.match(server.calls.ImportKey![0], {
      name: 'byok-1',
      kind: 'AES_256',
      importKeyId: 'imp-1',
      wrapAlgorithm: 'RSA_AES_KEY_WRAP_SHA1',
      newVersion: false,
      allowedOperations: ['WRAP_KEY'],
    });
    t.same(imported[0], material, 'the server-side unwrap recovers the exact material');
    t.match(im.stdout, /imported as version v1/);

    // A PEM private key as material is converted to PKCS#8 DER; sha256 is recorded in the blob.
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = join(dir, 'ec.pem');
    writeFileSync(pem, ec.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const blob2 = join(dir, 'blob2.bin');
    const p2 = await runCli([
      'byok',
      'pack',
      '--public-key',
      pub,
      '--key-file',
      pem,
      '--out',
      blob2,
      '--hash',
      'sha256',
      '--json',
    ]);
    t.equal(p2.code, 0, p2.stderr);
    t.match(JSON.parse(p2.stdout), { file: blob2, wrapAlg: 'rsa-aes-kw-sha256' });
    t.equal(parseImportBlob(readFileSync(blob2))!.hash, 'sha256');
    const im2 = await runCli(
      [
        'keys',
        'import',
        'signer',
        '--kind',
        'ec-p256',
        '--import-key-id',
        'imp-1',
        '--blob',
        blob2,
        '--wrap-alg',
        'rsa-aes-kw-sha256',
        ...conn,
      ],
      { env },
    );
    t.equal(im2.code, 0, im2.stderr);
    t.same(imported[1], ec.privateKey.export({ format: 'der', type: 'pkcs8' }));

    // Bad inputs to pack.
    const notRsa = join(dir, 'ec.pub.pem');
    writeFileSync(notRsa, ec.publicKey.export({ format: 'pem', type: 'spki' }));
    const nr = await runCli([
      'byok',
      'pack',
      '--public-key',
      notRsa,
      '--key-file',
      matFile,
      '--out',
      join(dir, 'x'),
    ]);
    t.equal(nr.code, 2);
    t.match(nr.stderr, /--public-key: the key-exchange key must be RSA, got ec/);
    const empty = join(dir, 'empty.bin');
    writeFileSync(empty, '');
    const em = await runCli([
      'byok',
      'pack',
      '--public-key',
      pub,
      '--key-file',
      empty,
      '--out',
      join(dir, 'y'),
    ]);
    t.equal(em.code, 2);
    t.match(em.stderr, /--key-file: the file is empty/);
    const badPem = join(dir, 'bad.pem');
    writeFileSync(badPem, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    const bp = await runCli([
      'byok',
      'pack',
      '--public-key',
      pub,
      '--key-file',
      badPem,
      '--out',
      join(dir, 'z'),
    ]);
    t.equal(bp.code, 2);
    t.match(bp.stderr, /--key-file: a PEM file that is not an unencrypted private key/);
    t.notMatch(bp.stderr, /AAAA/);
  },
);

t.test('policy show and explain (server)', async (t) => {
  const { server, conn, env } = await setup(t);
  const s = await runCli(['policy', 'show', ...conn], { env });
  t.equal(s.code, 0, s.stderr);
  t.match(s.stdout, /# etag: e-5 +updated: 2026-02-01T00:00:00.000Z +by: spiffe:\/\/hyokd.dev\/admin/);
  t.match(s.stdout, /^version: 1$/m);
  const sj = await runCli(['policy', 'show', '--json', ...conn], { env });
  t.same(JSON.parse(sj.stdout), {
    document: 'version: 1\n',
    etag: 'e-5',
    updatedTime: '2026-02-01T00:00:00.000Z',
    updatedBy: DEV_ADMIN_ID,
  });

  const e = await runCli(
    [
      'policy',
      'explain',
      '--identity',
      'spiffe://x/y',
      '--permission',
      'purge',
      '--key',
      'prod-1',
      '--reason',
      'cleanup',
      '--context',
      'ticket=T-1',
      ...conn,
    ],
    { env },
  );
  t.equal(e.code, 0, e.stderr);
  t.match(server.calls.ExplainPolicy![0], {
    identity: 'spiffe://x/y',
    operation: 'purge',
    keyName: 'prod-1',
    requestContext: { reason: 'cleanup' },
    context: { ticket: 'T-1' },
  });
  t.notOk(
    'reason' in server.calls.ExplainPolicy![0].context,
    '--reason is the hypothetical one, not the call context',
  );
  t.match(e.stdout, /^DENIED by deny\[0\]: denied: spiffe:\/\/x\/y purge$/m);
  t.match(e.stdout, /needs quorum: 2 approval\(s\) for PurgeKey/);
  t.match(e.stdout, /^ {2}\* deny\[0\]: purge is denied$/m);
  const ej = await runCli(
    ['policy', 'explain', '--identity', 'a', '--permission', 'get', '--json', ...conn],
    { env },
  );
  t.match(JSON.parse(ej.stdout), {
    allowed: false,
    decidedBy: 'deny[0]',
    quorumApprovals: 2,
    trace: [{ rule: 'deny[0]' }, {}],
  });
});

t.test('keys tag and keys rotation', async (t) => {
  const { server, conn, env } = await setup(t);
  const tg = await runCli(['keys', 'tag', 'a', '--set', 'team=pay', '--remove', 'old', ...conn], { env });
  t.equal(tg.code, 0, tg.stderr);
  t.match(server.calls.SetTags![0], { name: 'a', tags: { team: 'pay' }, replace: false, remove: ['old'] });
  t.match(tg.stdout, /tags: +env=prod, team=pay/);
  const none = await runCli(['keys', 'tag', 'a', ...conn], { env });
  t.equal(none.code, 2);
  t.match(none.stderr, /give --set, --remove or --replace/);
  const badRemove = await runCli(['keys', 'tag', 'a', '--remove', 'a b', ...conn], { env });
  t.equal(badRemove.code, 2);

  const ro = await runCli(['keys', 'rotation', 'a', '--rotate-after', '30d', ...conn], { env });
  t.equal(ro.code, 0, ro.stderr);
  t.same(server.calls.SetRotationPolicy![0].rotationPolicy.rotateAfter, { seconds: '2592000', nanos: 0 });
  t.match(ro.stdout, /rotation: +every 30d/);
  const off = await runCli(['keys', 'rotation', 'a', '--off', '--json', ...conn], { env });
  t.equal(off.code, 0);
  t.equal(server.calls.SetRotationPolicy![1].rotationPolicy, null);
  t.equal((JSON.parse(off.stdout) as { key: { rotationPolicy: unknown } }).key.rotationPolicy, null);
  for (const argv of [
    ['keys', 'rotation', 'a'],
    ['keys', 'rotation', 'a', '--off', '--rotate-after', '1d'],
    ['keys', 'rotation', 'a', '--rotate-after', '0'],
  ]) {
    const r = await runCli([...argv, ...conn], { env });
    t.equal(r.code, 2, argv.join(' '));
  }
});

t.test('policy set checks the file locally, then sends it with the etag', async (t) => {
  const { server, conn, env } = await setup(t);
  const dir = tempDir(t);
  const good = join(dir, 'p.yaml');
  writeFileSync(good, 'version: 1\nroles:\n  r: [get]\n');
  const r = await runCli(['policy', 'set', good, '--etag', 'e-5', ...conn], { env });
  t.equal(r.code, 0, r.stderr);
  t.match(server.calls.SetPolicy![0], { document: 'version: 1\nroles:\n  r: [get]\n', etag: 'e-5' });
  t.match(r.stdout, /policy set: etag e-6/);
  const stale = await runCli(['policy', 'set', good, '--etag', 'e-1', ...conn], { env });
  t.equal(stale.code, 1);
  t.match(stale.stderr, /ETAG_MISMATCH \(ABORTED 10\)/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'version: 3\n');
  const b = await runCli(['policy', 'set', bad, ...conn], { env });
  t.equal(b.code, 2);
  t.match(b.stderr, /is not a valid policy/);
  t.match(b.stderr, /- version: version must be 1/);
  t.equal(server.calls.SetPolicy!.length, 2, 'the invalid file was not sent');
});

t.test('keys create --backupable and keys protect', async (t) => {
  const { server, conn, env } = await setup(t);
  const b = await runCli(['keys', 'create', 'bk', '--kind', 'aes-256', '--backupable', ...conn], { env });
  t.equal(b.code, 0, b.stderr);
  t.equal(server.calls.CreateKey![0].backupable, true);
  const d = await runCli(['keys', 'create', 'plain', '--kind', 'aes-256', ...conn], { env });
  t.equal(d.code, 0, d.stderr);
  t.equal(server.calls.CreateKey![1].backupable, false, 'default: not backupable');

  const p = await runCli(['keys', 'protect', 'bk', '--reason', 'legal-hold', ...conn], { env });
  t.equal(p.code, 0, p.stderr);
  t.match(server.calls.EnablePurgeProtection![0], { name: 'bk', context: { reason: 'legal-hold' } });
  t.match(p.stdout, /purge protection on/);
  const j = await runCli(['keys', 'protect', 'bk', '--json', ...conn], { env });
  t.equal((JSON.parse(j.stdout) as { key: { purgeProtection: boolean } }).key.purgeProtection, true);
  const bad = await runCli(['keys', 'protect', 'a b', ...conn], { env });
  t.equal(bad.code, 2, 'a bad name is a usage error');
  t.equal(server.calls.EnablePurgeProtection!.length, 2, 'and is not sent');
});

t.test('domain show, init, join', async (t) => {
  const { server, conn, env } = await setup(t);
  const none = await runCli(['domain', 'show', ...conn], { env });
  t.equal(none.code, 0, none.stderr);
  t.match(none.stdout, /no security domain is bound/);
  const noneJ = await runCli(['domain', 'show', '--json', ...conn], { env });
  t.same(JSON.parse(noneJ.stdout), { domain: null });

  const init = await runCli(['domain', 'init', ...conn], { env });
  t.equal(init.code, 0, init.stderr);
  t.match(init.stdout, /^created a new security domain$/m);
  t.match(init.stdout, `security domain: ${DOMAIN.domainId}`);
  t.match(init.stdout, /backup key id: +0a1b2c3d/);
  t.match(init.stdout, `hyokd domain join --domain-id ${DOMAIN.domainId} --backup-key-id 0a1b2c3d`);
  const again = await runCli(['domain', 'init', '--json', ...conn], { env });
  t.same(JSON.parse(again.stdout), {
    created: false,
    domain: { domainId: DOMAIN.domainId, backupKeyId: '0a1b2c3d', boundTime: '2026-03-01T09:00:00.000Z' },
  });
  const show = await runCli(['domain', 'show', ...conn], { env });
  t.match(show.stdout, /bound: +2026-03-01T09:00:00.000Z/);

  const joined = await runCli(['domain', 'join', '--domain-id', 'd-2', '--backup-key-id', 'ff00', ...conn], {
    env,
  });
  t.equal(joined.code, 1, 'the server refuses: already bound');
  t.match(joined.stderr, /DOMAIN_BOUND/);
  t.match(server.calls.JoinSecurityDomain![0], { domainId: 'd-2', backupKeyId: 'ff00' });

  for (const [argv, msg] of [
    [['--domain-id', 'a b', '--backup-key-id', 'ff'], /--domain-id: 1-128 characters/],
    [['--domain-id', 'd', '--backup-key-id', 'FF'], /--backup-key-id: 1-64 bytes of lowercase hex/],
    [['--domain-id', 'd', '--backup-key-id', 'abc'], /--backup-key-id/],
    [['--domain-id', 'd'], /--backup-key-id/],
    [['--backup-key-id', 'ff'], /--domain-id/],
  ] as const) {
    const r = await runCli(['domain', 'join', ...argv, ...conn], { env });
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, msg);
  }
  t.equal(server.calls.JoinSecurityDomain!.length, 1, 'usage errors are not sent');
});
