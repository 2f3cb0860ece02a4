import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  QUORUM_OPERATION_NAMES,
  ConfigError,
  ENV_OVERRIDES,
  envNameFor,
  loadConfig,
  parseListen,
  unknownEnvOverrides,
} from '../../src/config/index.js';
import { QUORUM_OPERATIONS } from '../../src/server/quorum-gate.js';

const SECRET = 'S3cr3t-PIN-9931';

/** Runs fn, expects a ConfigError, returns its message. */
function configError(t: Test, fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    t.type(e, ConfigError, 'throws ConfigError');
    return (e as Error).message;
  }
  t.fail('expected a ConfigError');
  return '';
}

function yamlFile(dir: string, text: string, name = 'hyokd.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

t.test('defaults with no file and no environment', async (t) => {
  const cwd = t.testdir();
  const c = loadConfig({ env: {}, cwd });
  const home = join(cwd, 'var');
  t.equal(c.home, home);
  t.equal(c.file, null);
  t.same(c.hsm, {
    module: '/usr/lib/softhsm/libsofthsm2.so',
    tokenLabel: 'hyokd',
    tokenSerial: null,
    pinFile: join(home, 'hsm.pin'),
    pinEnv: null,
    sessions: null,
    queueCapacity: 4096,
    sessionObjectCopies: false,
    sessionCopyRecheckMs: 1000,
    opTimeoutMs: 5000,
  });
  t.equal(c.server.listen, '127.0.0.1:8443');
  t.same(c.server.tls, {
    cert: join(home, 'pki/server.pem'),
    key: join(home, 'pki/server.key'),
    clientCa: join(home, 'pki/ca.pem'),
  });
  t.equal(c.server.maxBatchItems, 256);
  t.equal(c.server.maxDekBytes, 64);
  t.equal(c.server.maxAadBytes, 8192);
  t.equal(c.server.maxContextEntries, 16);
  t.equal(c.server.maxMessageBytes, 4 * 1024 * 1024);
  t.equal(c.server.drainTimeoutMs, 10000);
  t.equal(c.store.path, join(home, 'hyokd.db'));
  t.same(c.audit, {
    dir: join(home, 'audit'),
    enabled: true,
    rotateBytes: 64 * 1024 * 1024,
    rotateAgeMs: 86_400_000,
    reserveBytes: 4 * 1024 * 1024,
    checkpointEvery: 1000,
    checkpointIntervalMs: 60000,
    writeTimeoutMs: 2000,
    groupCommitMaxDelayMs: 0,
  });
  t.same(c.metrics, { listen: '127.0.0.1:9464', enabled: true });
  t.equal(c.policy.file, join(home, 'policy.yaml'));
  t.same(c.quorum, { operations: [], approvals: 2, ttlMs: 86_400_000 });
  t.equal(c.log.level, 'info');
});

t.test('the result is deeply frozen', async (t) => {
  const c = loadConfig({ env: {}, cwd: t.testdir() });
  t.ok(Object.isFrozen(c));
  t.ok(Object.isFrozen(c.hsm));
  t.ok(Object.isFrozen(c.server.tls));
  t.throws(() => {
    (c.hsm as { opTimeoutMs: number }).opTimeoutMs = 1;
  }, TypeError);
});

t.test('YAML values apply and relative paths resolve against home', async (t) => {
  const cwd = t.testdir();
  const file = yamlFile(
    cwd,
    [
      'home: data',
      'hsm:',
      '  module: /opt/hsm/lib.so',
      '  tokenSerial: "0123abcd"',
      '  pinEnv: HSM_PIN',
      '  sessions: 3',
      '  sessionObjectCopies: true',
      '  sessionCopyRecheckMs: 250',
      'server:',
      '  listen: "[::1]:0"',
      '  tls: { cert: certs/s.pem, clientCa: /etc/ca.pem }',
      'store: { path: db/meta.db }',
      'log: { level: debug }',
    ].join('\n'),
  );
  const c = loadConfig({ file: 'hyokd.yaml', env: {}, cwd });
  const home = join(cwd, 'data');
  t.equal(c.file, file);
  t.equal(c.home, home);
  t.equal(c.hsm.module, '/opt/hsm/lib.so');
  t.equal(c.hsm.tokenSerial, '0123abcd');
  t.equal(c.hsm.tokenLabel, null, 'no default label when a serial is given');
  t.equal(c.hsm.pinEnv, 'HSM_PIN');
  t.equal(c.hsm.pinFile, null, 'no default pin file when pinEnv is given');
  t.equal(c.hsm.sessions, 3);
  t.equal(c.hsm.sessionObjectCopies, true);
  t.equal(c.hsm.sessionCopyRecheckMs, 250);
  t.equal(c.server.listen, '[::1]:0');
  t.equal(c.server.tls.cert, join(home, 'certs/s.pem'));
  t.equal(c.server.tls.key, join(home, 'pki/server.key'));
  t.equal(c.server.tls.clientCa, '/etc/ca.pem');
  t.equal(c.store.path, join(home, 'db/meta.db'));
  t.equal(c.log.level, 'debug');
});

t.test('HYOKD_CONFIG names the file; an empty file means defaults', async (t) => {
  const cwd = t.testdir();
  yamlFile(cwd, 'metrics: { enabled: false }\n', 'a.yaml');
  t.equal(loadConfig({ env: { HYOKD_CONFIG: 'a.yaml' }, cwd }).metrics.enabled, false);
  yamlFile(cwd, '# nothing\n', 'empty.yaml');
  t.equal(loadConfig({ env: { HYOKD_CONFIG: 'empty.yaml' }, cwd }).metrics.enabled, true);
});

t.test('environment overrides win over YAML, with type coercion', async (t) => {
  const cwd = t.testdir();
  yamlFile(cwd, 'hsm: { queueCapacity: 10, sessions: 2 }\naudit: { enabled: true }\nhome: from-yaml\n');
  const c = loadConfig({
    file: 'hyokd.yaml',
    cwd,
    env: {
      HYOKD_HOME: '/srv/hyokd',
      HYOKD_HSM_QUEUE_CAPACITY: '77',
      HYOKD_HSM_SESSIONS: 'auto',
      HYOKD_AUDIT_ENABLED: 'off',
      HYOKD_SERVER_LISTEN: '0.0.0.0:9000',
      HYOKD_SERVER_TLS_CLIENT_CA: 'trust/clients.pem',
      HYOKD_HSM_PIN_FILE: '/run/secrets/pin',
      HYOKD_LOG_LEVEL: 'warn',
    },
  });
  t.equal(c.home, '/srv/hyokd');
  t.equal(c.hsm.queueCapacity, 77);
  t.equal(c.hsm.sessions, null);
  t.equal(c.audit.enabled, false);
  t.equal(c.server.listen, '0.0.0.0:9000');
  t.equal(c.server.tls.clientCa, '/srv/hyokd/trust/clients.pem');
  t.equal(c.hsm.pinFile, '/run/secrets/pin');
  t.equal(c.log.level, 'warn');
  for (const [v, want] of [
    ['true', true],
    ['1', true],
    ['YES', true],
    ['false', false],
    ['0', false],
  ] as const) {
    t.equal(loadConfig({ env: { HYOKD_METRICS_ENABLED: v }, cwd }).metrics.enabled, want, `boolean ${v}`);
  }
});

t.test('every field has a documented variable', async (t) => {
  const names = ENV_OVERRIDES.map((e) => e.env);
  t.equal(new Set(names).size, names.length, 'names are unique');
  for (const [env, path] of [
    ['HYOKD_HOME', 'home'],
    ['HYOKD_HSM_MODULE', 'hsm.module'],
    ['HYOKD_HSM_PIN_FILE', 'hsm.pinFile'],
    ['HYOKD_HSM_PIN_ENV', 'hsm.pinEnv'],
    ['HYOKD_SERVER_LISTEN', 'server.listen'],
    ['HYOKD_SERVER_TLS_CLIENT_CA', 'server.tls.clientCa'],
    ['HYOKD_AUDIT_GROUP_COMMIT_MAX_DELAY_MS', 'audit.groupCommitMaxDelayMs'],
    ['HYOKD_LOG_LEVEL', 'log.level'],
  ]) {
    t.ok(
      ENV_OVERRIDES.some((e) => e.env === env && e.path === path),
      `${env} -> ${path}`,
    );
  }
  t.ok(ENV_OVERRIDES.some((e) => e.env === 'HYOKD_QUORUM_OPERATIONS' && e.path === 'quorum.operations'));
  t.equal(ENV_OVERRIDES.length, 42, 'one variable per leaf field');
  t.equal(envNameFor(['server', 'maxConnectionAgeGraceMs']), 'HYOKD_SERVER_MAX_CONNECTION_AGE_GRACE_MS');
  t.same(
    unknownEnvOverrides({ HYOKD_HSM_MODUEL: 'x', HYOKD_HSM_MODULE: 'y', HYOKD_CONFIG: 'z', PATH: '/' }),
    ['HYOKD_HSM_MODUEL'],
  );
  t.same(unknownEnvOverrides({ HYOKD_PIN: 'x' }, ['HYOKD_PIN']), []);
});

t.test('unknown keys are refused, naming the path and the allowed keys', async (t) => {
  const cwd = t.testdir();
  yamlFile(cwd, 'hsm:\n  moduel: /x.so\nservr: {}\nserver: { tls: { ca: x } }\n');
  const msg = configError(t, () => loadConfig({ file: 'hyokd.yaml', env: {}, cwd }));
  t.match(msg, /hsm\.moduel: unknown key .*Allowed keys in hsm: module, tokenLabel/);
  t.match(msg, /servr: unknown key .*Allowed keys at the top level: home, hsm, server/);
  t.match(msg, /server\.tls\.ca: unknown key .*Allowed keys in server\.tls: cert, key, clientCa/);
  t.match(msg, /3 problems/);
});

t.test('bad types are named by dotted path with origin and a hint', async (t) => {
  const cwd = t.testdir();
  const file = yamlFile(
    cwd,
    'hsm:\n  queueCapacity: lots\n  opTimeoutMs: 1.5\nserver:\n  listen: localhost\n',
  );
  const msg = configError(t, () => loadConfig({ file: 'hyokd.yaml', env: {}, cwd }));
  t.match(msg, `hsm.queueCapacity: Invalid input: expected number, received string (in ${file})`);
  t.match(
    msg,
    /hsm\.queueCapacity: .*Expected: .*a positive integer; set it in the config file or with HYOKD_HSM_QUEUE_CAPACITY/,
  );
  t.match(msg, /hsm\.opTimeoutMs: .*expected int/i);
  t.match(msg, /server\.listen: Invalid listen address .*host:port/);

  const envMsg = configError(t, () => loadConfig({ env: { HYOKD_SERVER_MAX_BATCH_ITEMS: '0' }, cwd }));
  t.match(
    envMsg,
    /server\.maxBatchItems: Too small.*\(from environment variable HYOKD_SERVER_MAX_BATCH_ITEMS\)/,
  );
  t.match(envMsg, /a positive integer; fix or unset HYOKD_SERVER_MAX_BATCH_ITEMS\.$/);

  // audit.reserveBytes: 0 is allowed (plain appends), negative and fractions are not.
  t.equal(loadConfig({ env: { HYOKD_AUDIT_RESERVE_BYTES: '0' }, cwd }).audit.reserveBytes, 0);
  const reserve = configError(t, () => loadConfig({ env: { HYOKD_AUDIT_RESERVE_BYTES: '-1' }, cwd }));
  t.match(reserve, /audit\.reserveBytes: Too small.*HYOKD_AUDIT_RESERVE_BYTES/);
  t.match(
    configError(t, () => loadConfig({ env: { HYOKD_AUDIT_RESERVE_BYTES: '4096.5' }, cwd })),
    /audit\.reserveBytes: .*expected int/i,
  );

  // hsm.sessionCopyRecheckMs: 1 ms to an hour, whole milliseconds.
  t.equal(loadConfig({ env: { HYOKD_HSM_SESSION_COPY_RECHECK_MS: '1' }, cwd }).hsm.sessionCopyRecheckMs, 1);
  for (const [bad, why] of [
    ['0', /Too small/],
    ['3600001', /Too big/],
    ['2.5', /expected int/i],
    ['soon', /expected number/i],
  ] as const) {
    t.match(
      configError(t, () => loadConfig({ env: { HYOKD_HSM_SESSION_COPY_RECHECK_MS: bad }, cwd })),
      new RegExp(`hsm\\.sessionCopyRecheckMs: .*${why.source}.*HYOKD_HSM_SESSION_COPY_RECHECK_MS`, why.flags),
      bad,
    );
  }

  yamlFile(cwd, 'hsm: 5\n', 'scalar.yaml');
  const section = configError(t, () => loadConfig({ file: 'scalar.yaml', env: {}, cwd }));
  t.match(section, /^invalid configuration: hsm: Invalid input: expected object/);
});

t.test('pinFile and pinEnv together are refused; so are tokenLabel and tokenSerial', async (t) => {
  const cwd = t.testdir();
  const pin = configError(t, () =>
    loadConfig({ env: { HYOKD_HSM_PIN_FILE: 'pin', HYOKD_HSM_PIN_ENV: 'HSM_PIN' }, cwd }),
  );
  t.match(pin, /hsm\.pinEnv: pinFile and pinEnv are both set .*Keep exactly one of them/);
  const token = configError(t, () =>
    loadConfig({ env: { HYOKD_HSM_TOKEN_LABEL: 'a', HYOKD_HSM_TOKEN_SERIAL: 'b' }, cwd }),
  );
  t.match(token, /hsm\.tokenSerial: tokenLabel and tokenSerial are both set/);
  const bad = configError(t, () => loadConfig({ env: { HYOKD_HSM_PIN_ENV: 'not a name' }, cwd }));
  t.match(bad, /hsm\.pinEnv: Invalid environment variable name/);
});

t.test('file problems: missing, YAML syntax, not a mapping', async (t) => {
  const cwd = t.testdir();
  t.match(
    configError(t, () => loadConfig({ file: 'nope.yaml', env: {}, cwd })),
    /config file .*nope\.yaml does not exist/,
  );
  yamlFile(cwd, 'hsm:\n  module: [unclosed\n', 'broken.yaml');
  t.match(
    configError(t, () => loadConfig({ file: 'broken.yaml', env: {}, cwd })),
    /broken\.yaml: YAML syntax error at line \d+, column \d+ \(\w+\)/,
  );
  yamlFile(cwd, '- a\n- b\n', 'list.yaml');
  t.match(
    configError(t, () => loadConfig({ file: 'list.yaml', env: {}, cwd })),
    /top level must be a mapping .* not a list/,
  );
  yamlFile(cwd, 'log: {level: info}\nlog: {level: debug}\n', 'dup.yaml');
  t.match(
    configError(t, () => loadConfig({ file: 'dup.yaml', env: {}, cwd })),
    /YAML syntax error .*DUPLICATE_KEY/,
  );
});

t.test('a PIN never appears in an error message', async (t) => {
  const cwd = t.testdir();
  const cases: Array<[string, () => unknown]> = [];
  yamlFile(cwd, `hsm:\n  pin: ${SECRET}\n`, 'pin-key.yaml');
  cases.push(['PIN under an unknown key', () => loadConfig({ file: 'pin-key.yaml', env: {}, cwd })]);
  yamlFile(cwd, `hsm:\n  pinEnv: ${SECRET}!\n`, 'pin-env.yaml');
  cases.push(['PIN pasted into pinEnv', () => loadConfig({ file: 'pin-env.yaml', env: {}, cwd })]);
  yamlFile(cwd, `hsm:\n  tokenLabel: "${SECRET}\n  pinFile: x\n`, 'pin-syntax.yaml');
  cases.push([
    'PIN on a line with a YAML syntax error',
    () => loadConfig({ file: 'pin-syntax.yaml', env: {}, cwd }),
  ]);
  cases.push(['PIN in a typed env override', () => loadConfig({ env: { HYOKD_HSM_SESSIONS: SECRET }, cwd })]);
  cases.push(['PIN as a log level', () => loadConfig({ env: { HYOKD_LOG_LEVEL: SECRET }, cwd })]);
  for (const [name, fn] of cases) {
    const msg = configError(t, fn);
    t.notMatch(msg, SECRET, name);
    t.notMatch(msg, 'S3cr3t', `${name} (no fragment either)`);
  }
  const pinKey = configError(t, cases[0]![1]);
  t.match(pinKey, /hsm\.pin: unknown key.*never goes in the config: use hsm\.pinFile or hsm\.pinEnv/);
});

t.test('parseListen', async (t) => {
  t.same(parseListen('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 });
  t.same(parseListen('[::1]:0'), { host: '::1', port: 0 });
  t.same(parseListen('hsm.internal:443'), { host: 'hsm.internal', port: 443 });
  t.equal(parseListen('127.0.0.1'), null);
  t.equal(parseListen('127.0.0.1:65536'), null);
  t.equal(parseListen('[nope]:1'), null);
  t.equal(parseListen('::1:80'), null, 'IPv6 needs brackets');
});

t.test('loading has no side effects on disk', async (t) => {
  const cwd = t.testdir();
  mkdirSync(join(cwd, 'x'));
  const c = loadConfig({ env: { HYOKD_HOME: 'x/y' }, cwd });
  t.equal(c.home, join(cwd, 'x/y'));
  t.notOk(existsSync(c.home), 'home is not created by loadConfig');
});

t.test('quorum: operations, approvals and ttl from YAML and from the environment', async (t) => {
  const cwd = t.testdir();
  yamlFile(cwd, 'quorum:\n  operations: [PurgeKey, DeleteKey, PurgeKey]\n  approvals: 3\n  ttlMs: 60000\n');
  const c = loadConfig({ file: 'hyokd.yaml', env: {}, cwd });
  t.same(
    c.quorum,
    { operations: ['PurgeKey', 'DeleteKey'], approvals: 3, ttlMs: 60_000 },
    'duplicates dropped',
  );
  t.ok(Object.isFrozen(c.quorum.operations));
  const e = loadConfig({
    file: 'hyokd.yaml',
    env: { HYOKD_QUORUM_OPERATIONS: 'SetPolicy, InitSecurityDomain', HYOKD_QUORUM_APPROVALS: '4' },
    cwd,
  });
  t.same(e.quorum.operations, ['SetPolicy', 'InitSecurityDomain'], 'comma-separated, env wins');
  t.equal(e.quorum.approvals, 4);
  t.same(loadConfig({ env: { HYOKD_QUORUM_OPERATIONS: '' }, cwd }).quorum.operations, [], 'empty: none');
});

t.test('quorum: the config accepts exactly the operations the gate knows', async (t) => {
  t.same([...QUORUM_OPERATION_NAMES].sort(), [...QUORUM_OPERATIONS].sort());
});

t.test('quorum: an unknown operation name is refused, naming the field', async (t) => {
  const cwd = t.testdir();
  const file = yamlFile(cwd, 'quorum:\n  operations: [PurgeKey, purge]\n');
  const msg = configError(t, () => loadConfig({ file: 'hyokd.yaml', env: {}, cwd }));
  t.match(msg, `quorum.operations.1: Invalid option`);
  t.match(msg, `(in ${file})`);
  t.match(
    msg,
    /Expected: admin operations held for M-of-N approval .*PurgeKey.*; set it in the config file or with HYOKD_QUORUM_OPERATIONS\.$/,
  );
  t.notMatch(msg, /quorum\.operations\.0/, 'the valid entry is not blamed');
  const env = configError(t, () => loadConfig({ env: { HYOKD_QUORUM_OPERATIONS: 'DeleteKey,Fly' }, cwd }));
  t.match(
    env,
    /quorum\.operations\.1: Invalid option.*\(from environment variable HYOKD_QUORUM_OPERATIONS\)/,
  );
  t.match(env, /fix or unset HYOKD_QUORUM_OPERATIONS\.$/);
});

t.test('quorum: approvals and ttlMs must be positive integers; the section is strict', async (t) => {
  const cwd = t.testdir();
  t.match(
    configError(t, () => loadConfig({ env: { HYOKD_QUORUM_APPROVALS: '0' }, cwd })),
    /quorum\.approvals: Too small.*approvals a held operation needs, a positive integer/,
  );
  t.match(
    configError(t, () => loadConfig({ env: { HYOKD_QUORUM_TTL_MS: '1.5' }, cwd })),
    /quorum\.ttlMs: .*expected int/i,
  );
  yamlFile(cwd, 'quorum:\n  operations: PurgeKey\n  approver: x\n');
  const msg = configError(t, () => loadConfig({ file: 'hyokd.yaml', env: {}, cwd }));
  t.match(msg, /quorum\.approver: unknown key .*Allowed keys in quorum: operations, approvals, ttlMs/);
  t.match(msg, /quorum\.operations: Invalid input: expected array/);
});
