// Bad input to every client command is a usage error (exit 2) whose message names the
// flag, and nothing is sent: these run without any server.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli, tempDir } from './client-harness.js';

const DEK32 = Buffer.alloc(32, 7).toString('base64');

t.test('--help exits 0 and lists the flags', async (t) => {
  const r = await runCli(['wrap', '--help']);
  t.equal(r.code, 0);
  t.match(r.stdout, /--dek-base64/);
  t.match(r.stdout, /--endpoint/);
  t.match(r.stdout, /--cert-key/);
  const k = await runCli(['keys', '--help']);
  t.equal(k.code, 0);
  for (const c of [
    'create',
    'list',
    'rotate',
    'purge',
    'adopt',
    'backup',
    'restore',
    'import',
    'import-key',
  ]) {
    t.match(k.stdout, new RegExp(`\\b${c}\\b`), c);
  }
});

t.test('a command group without a subcommand is a usage error', async (t) => {
  const r = await runCli(['keys']);
  t.equal(r.code, 2);
});

t.test('unknown flags are usage errors naming the flag', async (t) => {
  for (const argv of [
    ['wrap', '--key', 'k', '--dek-base64', DEK32, '--bogus'],
    ['unwrap', '--envelope', 'x'],
    ['generate-data-key', '--key', 'k', '--lenght', '16'],
    ['get-key', 'k', '--verbose'],
    ['keys', 'create', 'k', '--kind', 'aes-256', '--colour', 'red'],
    ['policy', 'check', 'p.yaml', '--strict'],
    ['audit', 'verify', '--fast'],
    ['byok', 'pack', '--public-key', 'p', '--key-file', 'k', '--out', 'o', '--pub', 'x'],
  ]) {
    const r = await runCli(argv);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, /unknown option '--/, argv.join(' '));
    t.equal(r.stdout, '', 'nothing printed on stdout');
  }
});

t.test('missing required options and arguments are usage errors', async (t) => {
  const cases: [string[], RegExp][] = [
    [['wrap', '--dek-base64', DEK32], /--key/],
    [['generate-data-key'], /--key/],
    [['get-key'], /missing required argument 'name'/],
    [['keys', 'create', 'k'], /--kind/],
    [['keys', 'get'], /missing required argument 'name'/],
    [['keys', 'backup', 'k'], /--out/],
    [
      ['keys', 'import', 'k', '--kind', 'aes-256', '--blob', 'b', '--wrap-alg', 'rsa-aes-kw-sha1'],
      /--import-key-id/,
    ],
    [['keys', 'import-key'], /--out/],
    [['policy', 'explain', '--permission', 'get'], /--identity/],
    [['policy', 'check'], /missing required argument 'file'/],
    [['byok', 'pack', '--public-key', 'p', '--out', 'o'], /--key-file/],
    [['wrap', '--key', 'k'], /exactly one of --dek-base64 or --dek-file/],
    [['unwrap'], /exactly one of --envelope-base64 or --envelope-file/],
  ];
  for (const [argv, re] of cases) {
    const r = await runCli(argv);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, re, argv.join(' '));
  }
});

t.test('malformed base64 is refused without echoing the value', async (t) => {
  const secretish = 'c2VjcmV0!c2VjcmV0';
  const r = await runCli(['wrap', '--key', 'k', '--dek-base64', secretish]);
  t.equal(r.code, 2);
  t.match(r.stderr, /--dek-base64: not valid base64/);
  t.notMatch(r.stderr, /c2VjcmV0/, 'the value is not echoed');
  for (const bad of ['abcde', 'ab=c', 'YWJj ZA==', 'YWJjZA===', 'YQ=']) {
    const e = await runCli(['unwrap', '--envelope-base64', bad]);
    t.equal(e.code, 2, bad);
    t.match(e.stderr, /--envelope-base64: not valid base64/, bad);
  }
  const aad = await runCli(['wrap', '--key', 'k', '--dek-base64', DEK32, '--aad-base64', '%%%']);
  t.equal(aad.code, 2);
  t.match(aad.stderr, /--aad-base64: not valid base64/);
});

t.test('oversized input is refused before any call', async (t) => {
  const bigDek = await runCli(['wrap', '--key', 'k', '--dek-base64', Buffer.alloc(65).toString('base64')]);
  t.equal(bigDek.code, 2);
  t.match(bigDek.stderr, /--dek-base64: decodes to 65 bytes; the limit is 64/);
  const oddDek = await runCli(['wrap', '--key', 'k', '--dek-base64', Buffer.alloc(20).toString('base64')]);
  t.equal(oddDek.code, 2);
  t.match(oddDek.stderr, /must be 16, 24 or 32 bytes, got 20/);
  const bigAad = await runCli(['wrap', '--key', 'k', '--dek-base64', DEK32, '--aad', 'x'.repeat(8193)]);
  t.equal(bigAad.code, 2);
  t.match(bigAad.stderr, /--aad: 8193 bytes; the limit is 8192/);
  const bigEnv = await runCli(['unwrap', '--envelope-base64', Buffer.alloc(2000).toString('base64')]);
  t.equal(bigEnv.code, 2);
  t.match(bigEnv.stderr, /--envelope-base64: decodes to 2000 bytes/);
  const dir = tempDir(t);
  const big = join(dir, 'big.bin');
  writeFileSync(big, Buffer.alloc(2 * 1024 * 1024));
  const restore = await runCli(['keys', 'restore', big]);
  t.equal(restore.code, 2);
  t.match(restore.stderr, /FILE: .*big\.bin is 2097152 bytes; the limit is 1048576/);
  const dekFile = join(dir, 'dek.bin');
  writeFileSync(dekFile, Buffer.alloc(100));
  const df = await runCli(['wrap', '--key', 'k', '--dek-file', dekFile]);
  t.equal(df.code, 2);
  t.match(df.stderr, /--dek-file: .* is 100 bytes; the limit is 64/);
  const ctx = await runCli([
    'get-key',
    'k',
    ...Array.from({ length: 33 }, (_, i) => ['--context', `k${i}=v`]).flat(),
  ]);
  t.equal(ctx.code, 2);
  t.match(ctx.stderr, /--context: at most 32 pairs/);
});

t.test('key names in the wrong format are refused', async (t) => {
  for (const bad of ['-dash-first', '.dot', 'has space', 'slash/name', 'ü', 'x'.repeat(129)]) {
    const r = await runCli(['wrap', '--key', bad, '--dek-base64', DEK32]);
    t.equal(r.code, 2, bad);
    t.match(r.stderr, /--key: invalid key name/, bad);
  }
  const g = await runCli(['keys', 'get', 'bad/name']);
  t.equal(g.code, 2);
  t.match(g.stderr, /NAME: invalid key name/);
  const gk = await runCli(['get-key', 'a b']);
  t.equal(gk.code, 2);
  const ok128 = await runCli(['keys', 'get', 'a'.repeat(128)], { env: { HYOKD_HOME: tempDir(t) } });
  t.match(ok128.stderr, /no client bundle/, 'a 128-character name passes the name check');
});

t.test('bad connection flags', async (t) => {
  const home = tempDir(t);
  const cases: [string[], RegExp][] = [
    [['get-key', 'k', '--endpoint', 'localhost'], /--endpoint: expected host:port/],
    [['get-key', 'k', '--endpoint', '127.0.0.1:0'], /--endpoint: expected host:port/],
    [['get-key', 'k', '--endpoint', '127.0.0.1:70000'], /--endpoint/],
    [['get-key', 'k', '--timeout', '0'], /--timeout: must be between 1 and 600000/],
    [['get-key', 'k', '--timeout', 'soon'], /--timeout: expected an integer/],
    [['get-key', 'k', '--context', 'novalue'], /--context: expected key=value/],
    [['get-key', 'k', '--context', 'a=1', '--context', 'a=2'], /--context: a given twice/],
    [['get-key', 'k', '--context', 'reason=x', '--reason', 'y'], /--reason and --context reason/],
    [['get-key', 'k', '--request-id', 'has space'], /--request-id/],
    [['get-key', 'k'], /no client bundle at .*client\.bundle\.pem/],
    [['keys', 'get', 'k'], /no client bundle at .*admin\.bundle\.pem/],
    [
      ['get-key', 'k', '--cert', 'c.pem'],
      /--cert, --cert-key and --ca go together; missing --cert-key, --ca/,
    ],
    [
      ['get-key', 'k', '--bundle', join(home, 'missing.pem')],
      /cannot read the bundle file .*missing\.pem \(ENOENT\)/,
    ],
    [
      ['get-key', 'k', '--bundle', 'b.pem', '--ca', 'ca.pem'],
      /give either --bundle or --cert\/--cert-key\/--ca/,
    ],
  ];
  for (const [argv, re] of cases) {
    const r = await runCli(argv, { env: { HYOKD_HOME: home } });
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, re, argv.join(' '));
  }
  const envBad = await runCli(['get-key', 'k'], { env: { HYOKD_HOME: home, HYOKD_ENDPOINT: 'nope' } });
  t.equal(envBad.code, 2);
  t.match(envBad.stderr, /HYOKD_ENDPOINT: expected host:port/);
  const notBundle = join(home, 'not-a-bundle.pem');
  writeFileSync(notBundle, 'hello\n');
  const nb = await runCli(['get-key', 'k', '--bundle', notBundle]);
  t.equal(nb.code, 2);
  t.match(nb.stderr, /expected exactly one "PRIVATE KEY" block/);
});

t.test('data-plane option values', async (t) => {
  const len = await runCli(['generate-data-key', '--key', 'k', '--length', '20']);
  t.equal(len.code, 2);
  t.match(len.stderr, /--length: must be 16, 24 or 32/);
  const both = await runCli([
    'wrap',
    '--key',
    'k',
    '--dek-base64',
    DEK32,
    '--aad',
    'a',
    '--aad-base64',
    'YQ==',
  ]);
  t.equal(both.code, 2);
  t.match(both.stderr, /--aad and --aad-base64: give one, not both/);
  const alg = await runCli(['unwrap', '--envelope-base64', 'SFlLRA==', '--rewrap-alg', 'rsa']);
  t.equal(alg.code, 2);
  t.match(alg.stderr, /--rewrap-alg needs --rewrap-to/);
  const dir = tempDir(t);
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a key');
  const rt = await runCli(['generate-data-key', '--key', 'k', '--rewrap-to', junk]);
  t.equal(rt.code, 2);
  t.match(rt.stderr, /--rewrap-to: .*junk\.pem is not a public key/);
  const missing = await runCli(['generate-data-key', '--key', 'k', '--rewrap-to', join(dir, 'nope.pem')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--rewrap-to: cannot read .*nope\.pem \(ENOENT\)/);
});

t.test('admin option values', async (t) => {
  const cases: [string[], RegExp][] = [
    [
      ['keys', 'create', 'k', '--kind', 'aes-128'],
      /--kind: unknown value "aes-128"; use one of aes-256, rsa-3072, ec-p256/,
    ],
    [['keys', 'create', 'k', '--kind', 'aes-256', '--ops', 'wrapKey,fly'], /--ops: unknown value "fly"/],
    [['keys', 'create', 'k', '--kind', 'aes-256', '--ops', 'wrapKey,'], /--ops: an empty entry/],
    [
      ['keys', 'create', 'k', '--kind', 'aes-256', '--retention-days', '3'],
      /--retention-days: must be between 7 and 90/,
    ],
    [
      ['keys', 'create', 'k', '--kind', 'aes-256', '--rotate-after', 'weekly'],
      /--rotate-after: expected a duration/,
    ],
    [['keys', 'create', 'k', '--kind', 'aes-256', '--tag', 'x'], /--tag: expected key=value/],
    [['keys', 'disable', 'k', '--version', '0'], /--version: must be between 1/],
    [['keys', 'adopt', 'k', '--kind', 'aes-256'], /exactly one of --hsm-id or --hsm-label/],
    [['keys', 'adopt', 'k', '--kind', 'aes-256', '--hsm-id', 'abc'], /--hsm-id: expected 1-64 bytes of hex/],
    [['keys', 'list', '--page-size', '-1'], /--page-size/],
    [
      [
        'keys',
        'import',
        'k',
        '--kind',
        'aes-256',
        '--import-key-id',
        'i',
        '--blob',
        'b',
        '--wrap-alg',
        'des',
      ],
      /--wrap-alg: unknown value "des"/,
    ],
    [
      [
        'keys',
        'import',
        'k',
        '--kind',
        'aes-256',
        '--import-key-id',
        'i',
        '--blob',
        'b',
        '--wrap-alg',
        'rsa-oaep-sha256',
        '--new-version',
        '--tag',
        'a=b',
      ],
      /apply to a new key, not with --new-version/,
    ],
    [['keys', 'get', 'k', '--quorum-request-id', 'a b'], /--quorum-request-id/],
    [
      ['policy', 'explain', '--identity', 'x', '--permission', 'fly'],
      /--permission: unknown permission "fly"/,
    ],
    [
      ['policy', 'explain', '--identity', 'x', '--permission', 'get', '--key', 'a/b'],
      /--key: invalid key name/,
    ],
    [
      ['byok', 'pack', '--public-key', 'p', '--key-file', 'k', '--out', 'o', '--hash', 'md5'],
      /--hash: must be sha1 or sha256/,
    ],
  ];
  for (const [argv, re] of cases) {
    const r = await runCli(argv);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, re, argv.join(' '));
  }
});

t.test('batch input is checked line by line before any call', async (t) => {
  const good = JSON.stringify({ key: 'k', dekBase64: DEK32 });
  const cases: [string, RegExp][] = [
    ['', /--input: no items/],
    [`${good}\nnot json\n`, /--input line 2: not valid JSON/],
    [`${good}\n[1,2]\n`, /--input line 2: expected a JSON object/],
    [`${good}\n\n${JSON.stringify({ key: 'k' })}\n`, /--input line 3: "dekBase64" is required/],
    [JSON.stringify({ key: 'k', dekBase64: DEK32, extra: 1 }), /--input line 1: unknown field "extra"/],
    [JSON.stringify({ key: 'a/b', dekBase64: DEK32 }), /--input line 1 "key": invalid key name/],
    [JSON.stringify({ key: 'k', dekBase64: '!!' }), /--input line 1 "dekBase64": not valid base64/],
    [JSON.stringify({ key: 'k', dekBase64: DEK32, aad: 5 }), /--input line 1: "aad" must be a string/],
    ['x'.repeat(70 * 1024), /--input line 1: longer than 65536 characters/],
  ];
  for (const [stdin, re] of cases) {
    const r = await runCli(['batch-wrap'], { stdin });
    t.equal(r.code, 2, String(re));
    t.match(r.stderr, re);
  }
  const bu = await runCli(['batch-unwrap'], {
    stdin: JSON.stringify({ envelopeBase64: 'YQ', aadBase64: '*' }),
  });
  t.equal(bu.code, 2);
  t.match(bu.stderr, /--input line 1: aadBase64: not valid base64/);
  const size = await runCli(['batch-unwrap', '--batch-size', '0'], { stdin: good });
  t.equal(size.code, 2);
  t.match(size.stderr, /--batch-size: must be between 1 and 10000/);
  const missing = await runCli(['batch-wrap', '--input', '/nonexistent/in.jsonl']);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--input: cannot read \/nonexistent\/in\.jsonl \(ENOENT\)/);
});

t.test('audit and policy flags', async (t) => {
  const home = tempDir(t);
  const cases: [string[], RegExp][] = [
    [['audit', 'tail', '-n', '0'], /-n\/--lines: must be between 1/],
    [['audit', 'search', '--since', 'yesterday'], /--since: expected an ISO 8601 time/],
    [['audit', 'search', '--since', '1h', '--until', '2h'], /--since is after --until/],
    [['audit', 'verify', '--anchor', '12'], /--anchor: expected SEQ:SHA256HEX/],
    [['audit', 'verify'], /DIR: cannot open .*audit \(ENOENT\); pass DIR or set HYOKD_HOME/],
    [['audit', 'tail', join(home, 'nope')], /DIR: cannot open .*nope \(ENOENT\)/],
    [['policy', 'check', 'policy.txt'], /FILE: .*\.yaml, \.yml or \.json/],
    [['policy', 'check', join(home, 'p.yaml')], /FILE: cannot read .*p\.yaml \(ENOENT\)/],
    [['policy', 'check', 'p.yaml', '--identity', 'x'], /--identity and --permission go together/],
  ];
  for (const [argv, re] of cases) {
    const r = await runCli(argv, { env: { HYOKD_HOME: home } });
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, re, argv.join(' '));
  }
});
