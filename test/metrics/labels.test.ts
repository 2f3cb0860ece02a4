// Label cardinality guards: whatever callers or sources send, label values come from
// fixed or capped sets, and nothing secret can become a label.
import t from 'tap';
import { Metrics, MethodLabels, BoundedLabelSet, KNOWN_METHODS, OTHER } from '../../src/metrics/index.js';
import {
  GRPC_STATUS_NAMES,
  HSM_OP_NAMES,
  identityClassLabel,
  reasonLabel,
  statusLabel,
  hsmOpLabel,
} from '../../src/metrics/labels.js';
import { ERROR_CODES } from '../../src/errors.js';
import type { HsmCounters } from '../../src/hsm/types.js';
import type { CallReport } from '../../src/server/observer.js';
import { find, parseExposition, value } from './exposition.js';

function call(over: Partial<CallReport> = {}): CallReport {
  return {
    service: 'hyok.v1.Hyok',
    method: 'Unwrap',
    status: 'OK',
    reason: '',
    identityClass: 'client',
    seconds: 0.001,
    items: 1,
    ...over,
  };
}

t.test('the default allowlist matches the services in proto/', async (t) => {
  t.same(Object.keys(KNOWN_METHODS).sort(), ['hyok.admin.v1.KeyAdmin', 'hyok.v1.Hyok']);
  t.ok(KNOWN_METHODS['hyok.v1.Hyok']!.includes('Unwrap'));
  t.ok(KNOWN_METHODS['hyok.admin.v1.KeyAdmin']!.includes('PurgeKey'));
});

t.test('status, reason, identity class and HSM op map to fixed sets', async (t) => {
  t.equal(GRPC_STATUS_NAMES.length, 17, 'the 17 gRPC codes');
  t.ok(GRPC_STATUS_NAMES.includes('RESOURCE_EXHAUSTED'));
  t.equal(statusLabel('OK'), 'OK');
  t.equal(statusLabel('UNAVAILABLE'), 'UNAVAILABLE');
  t.equal(statusLabel('ok'), 'UNKNOWN', 'case matters');
  t.equal(statusLabel('14'), 'UNKNOWN', 'numbers are not names');
  t.equal(statusLabel(14), 'UNKNOWN');
  t.equal(statusLabel('toString'), 'UNKNOWN', 'no prototype keys');

  t.equal(reasonLabel(''), '');
  t.equal(reasonLabel(undefined), '');
  t.equal(reasonLabel('INVALID_CIPHERTEXT'), 'INVALID_CIPHERTEXT');
  t.equal(reasonLabel('AUDIT_UNAVAILABLE'), 'AUDIT_UNAVAILABLE');
  t.equal(reasonLabel('CKR_PIN_INCORRECT: pin 1234 rejected'), OTHER, 'error text is never a label');
  t.equal(reasonLabel('__proto__'), OTHER);

  t.equal(identityClassLabel('admin'), 'admin');
  t.equal(identityClassLabel('anonymous'), 'anonymous');
  t.equal(
    identityClassLabel('spiffe://prod/ns/payments/sa/api'),
    'unknown',
    'a raw identity is never a label',
  );
  t.equal(identityClassLabel(undefined), 'unknown');

  for (const op of HSM_OP_NAMES) t.equal(hsmOpLabel(op), op);
  t.equal(hsmOpLabel('C_Decrypt'), OTHER);
});

t.test('unknown methods of known services become `other`', async (t) => {
  const l = new MethodLabels();
  t.same(l.label('hyok.v1.Hyok', 'Unwrap'), { service: 'hyok.v1.Hyok', method: 'Unwrap' });
  t.same(l.label('hyok.admin.v1.KeyAdmin', 'GetKey'), {
    service: 'hyok.admin.v1.KeyAdmin',
    method: 'GetKey',
  });
  t.same(
    l.label('hyok.v1.Hyok', 'PurgeKey'),
    { service: 'hyok.v1.Hyok', method: OTHER },
    'an admin method on the data plane',
  );
  t.same(l.label('hyok.v1.Hyok', 'Unwrap2'), { service: 'hyok.v1.Hyok', method: OTHER });
  t.same(l.label('hyok.v1.Hyok', ''), { service: 'hyok.v1.Hyok', method: OTHER });
});

t.test('unlisted services are admitted by shape, up to a cap on pairs', async (t) => {
  const l = new MethodLabels({ maxExtraMethods: 3 });
  t.same(l.label('xks', 'Decrypt'), { service: 'xks', method: 'Decrypt' });
  t.same(l.label('xks', 'Encrypt'), { service: 'xks', method: 'Encrypt' });
  t.same(l.label('xks', 'GetHealthStatus'), { service: 'xks', method: 'GetHealthStatus' });
  t.same(
    l.label('xks', 'GetKeyMetadata'),
    { service: OTHER, method: OTHER },
    'the fourth pair is over the cap',
  );
  t.same(l.label('xks', 'Decrypt'), { service: 'xks', method: 'Decrypt' }, 'admitted pairs stay');
  t.same(
    l.label('xks', '/kms/xks/v1/keys/my-key/decrypt'),
    { service: OTHER, method: OTHER },
    'a path (holding a key name) fails the shape',
  );
  t.same(l.label('x'.repeat(200), 'Decrypt'), { service: OTHER, method: OTHER }, 'too long');
  t.same(l.label('svc with space', 'M'), { service: OTHER, method: OTHER });
  t.same(l.label(undefined, null), { service: OTHER, method: OTHER });
});

t.test('a custom allowlist replaces the default', async (t) => {
  const l = new MethodLabels({ methods: { 'a.B': ['C'] }, maxExtraMethods: 0 });
  t.same(l.label('a.B', 'C'), { service: 'a.B', method: 'C' });
  t.same(l.label('a.B', 'D'), { service: 'a.B', method: OTHER });
  t.same(l.label('hyok.v1.Hyok', 'Unwrap'), { service: OTHER, method: OTHER }, 'no extras allowed');
});

t.test('BoundedLabelSet caps distinct values and rejects bad shapes', async (t) => {
  const s = new BoundedLabelSet(/^CKR_[A-Z_]+$/, 2);
  t.equal(s.label('CKR_A'), 'CKR_A');
  t.equal(s.label('CKR_B'), 'CKR_B');
  t.equal(s.label('CKR_C'), OTHER);
  t.equal(s.label('CKR_A'), 'CKR_A');
  t.equal(s.label('ckr_a'), OTHER);
  t.equal(s.label(42), OTHER);
  t.equal(s.size, 2);
});

t.test('a flood of random method names and HSM codes adds a bounded number of series', async (t) => {
  const errors: Record<string, number> = {};
  for (let i = 0; i < 500; i++) errors[`CKR_VENDOR_DEFINED_${i}`] = 1;
  errors['CKR_PIN 1234'] = 1;
  const counters: HsmCounters = {
    state: 'ready',
    queueDepth: 0,
    queueCapacity: 1,
    sessionsTotal: 1,
    sessionsBusy: 0,
    sessionsIdle: 1,
    ops: { decrypt: 1, 'C_Login(1234)': 9 },
    errors,
    reinitializations: 0,
    sessionReopens: 0,
    relogins: 0,
    handleResolves: 0,
    sessionCopiesDropped: 0,
    rejectedQueueFull: 0,
  };
  const m = new Metrics({ defaultMetrics: false, sources: { hsm: () => counters } });
  for (let i = 0; i < 1000; i++) {
    m.callStarted('hyok.v1.Hyok', `Probe${i}`);
    m.callFinished(call({ method: `Probe${i}` }));
    m.callFinished(call({ service: `svc${i}`, method: 'M' }));
    m.callFinished(call({ status: `STATUS_${i}`, reason: `REASON_${i}` }));
  }
  const e = parseExposition(await m.text());
  const requests = find(e, 'hyokd_requests_total');
  t.ok(requests.length <= 3 + 32, `requests_total has ${requests.length} series`);
  t.equal(
    value(e, 'hyokd_requests_total', { service: 'hyok.v1.Hyok', method: OTHER }),
    1000,
    'probes fold into `other`',
  );
  t.equal(
    value(e, 'hyokd_requests_total', { service: OTHER, method: OTHER }),
    1000 - 32,
    'services over the cap fold into `other`',
  );
  t.equal(value(e, 'hyokd_requests_total', { method: 'Unwrap', status: 'UNKNOWN' }), 1000);
  t.equal(value(e, 'hyokd_request_errors_total', { method: 'Unwrap', reason: OTHER }), 1000);
  t.equal(find(e, 'hyokd_requests_in_flight').length, 1, 'in-flight has one series for all probes');
  const codes = find(e, 'hyokd_hsm_errors_total');
  t.equal(codes.length, 129, '128 codes and `other`');
  t.equal(value(e, 'hyokd_hsm_errors_total', { code: OTHER }), 501 - 128);
  t.equal(value(e, 'hyokd_hsm_operations_total', { op: OTHER }), 9);
});

t.test('nothing but allowlisted values appears as a label', async (t) => {
  const secrets = ['1234', 'spiffe://prod/sa/payments', 'payments-kek', 'plaintext-dek-bytes'];
  const m = new Metrics({
    defaultMetrics: false,
    version: '0.1.0',
    sources: {
      hsm: () => ({
        state: 'ready',
        queueDepth: 0,
        queueCapacity: 1,
        sessionsTotal: 1,
        sessionsBusy: 0,
        sessionsIdle: 1,
        ops: { [`decrypt ${secrets[2]}`]: 1 },
        errors: { [`CKR_PIN_INCORRECT ${secrets[0]}`]: 1 },
        reinitializations: 0,
        sessionReopens: 0,
        relogins: 0,
        handleResolves: 0,
        sessionCopiesDropped: 0,
        rejectedQueueFull: 0,
      }),
    },
  });
  for (const s of secrets) {
    m.callStarted(s, s);
    m.callFinished({
      service: s,
      method: s,
      status: s,
      reason: s,
      identityClass: s as CallReport['identityClass'],
      seconds: 0.001,
      items: 1,
    });
    m.callFinished(call({ method: s, reason: s, status: 'INTERNAL' }));
  }
  const text = await m.text();
  for (const s of secrets) t.notOk(text.includes(s), `${JSON.stringify(s)} does not appear`);

  const allowed: Record<string, Set<string>> = {
    service: new Set([...Object.keys(KNOWN_METHODS), OTHER]),
    method: new Set([...Object.values(KNOWN_METHODS).flat(), OTHER]),
    status: new Set(GRPC_STATUS_NAMES),
    identity_class: new Set(['client', 'admin', 'unknown', 'anonymous']),
    reason: new Set([...ERROR_CODES, OTHER, 'UNSPECIFIED']),
    outcome: new Set(['ok', 'error']),
    op: new Set([...HSM_OP_NAMES, OTHER]),
    state: new Set(['ready', 'recovering', 'closed', 'busy', 'idle', 'enabled', 'disabled', 'soft-deleted']),
    within: new Set(['1d', '7d', '30d']),
    source: new Set(['hsm', 'audit', 'store']),
    version: new Set(['0.1.0']),
    commit: new Set(['']),
    node_version: new Set([process.version]),
  };
  const e = parseExposition(text);
  let checked = 0;
  for (const s of e.samples) {
    for (const [k, v] of Object.entries(s.labels)) {
      if (k === 'le') continue;
      if (k === 'code') {
        t.match(v, /^(?:(?:CKR|HYOKD)_[A-Z0-9_]+|other)$/, `${s.name} code=${v}`);
        continue;
      }
      t.ok(allowed[k]?.has(v), `${s.name} ${k}=${v} is from its fixed set`);
      checked++;
    }
  }
  t.ok(checked > 20, 'labels were checked');
  t.equal(value(e, 'hyokd_hsm_errors_total', { code: OTHER }), 1);
});
