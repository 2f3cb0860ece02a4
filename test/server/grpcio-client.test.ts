// A client on another gRPC implementation (gRPC core, through Debian's python3-grpcio) uses
// the service with nothing but reflection: test/interop/grpcio_client.py fetches the
// descriptors, builds its message types from them and makes every kind of call.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { KNOWN_METHODS } from '../../src/metrics/labels.js';
import { readRecords } from '../audit/fixtures.js';
import { runPython } from '../helpers/python.js';
import { startHarness } from './fixtures.js';

const h = await startHarness();
t.teardown(() => h.close());

interface InteropResult {
  grpcio: string;
  services: string[];
  files: string[];
  methods: string[];
  generate: { keyName: string; keyVersion: number; dekBytes: number };
  unwrap: { sameDek: boolean; keyVersion: number };
  tampered: {
    code: string;
    details: { code: number; errorInfo: Array<{ reason: string; domain: string }> } | null;
  };
  batch: Array<{ code: number; reason: string; sameDek: boolean }>;
  stream: Array<{ correlationId: string; code: number; sameDek: boolean }>;
  noClientCert: string;
  health: Record<string, number>;
}

t.test('a grpcio client built from reflection alone makes every kind of call', async (t) => {
  const pem = (name: string, text: string) => {
    const path = join(h.dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };
  const r = await runPython<InteropResult>('grpcio_client.py', {
    args: [
      String(h.server.port),
      pem('interop-ca.pem', h.ca.certPem),
      pem('interop-client.pem', h.clientCert.certPem),
      pem('interop-client.key', h.clientCert.keyPem),
    ],
  });
  t.comment(`grpcio ${r.grpcio}`);

  t.ok(r.services.includes('hyok.v1.Hyok'), 'reflection lists hyok.v1.Hyok');
  t.ok(r.services.includes('grpc.health.v1.Health'), 'and the health service');
  t.ok(r.files.includes('google/protobuf/timestamp.proto'), 'dependencies came with the answer');
  t.same(
    [...r.methods].sort(),
    [...KNOWN_METHODS['hyok.v1.Hyok']!].sort(),
    'every method of hyok.v1.Hyok reflected',
  );
  t.same(
    r.health,
    { '(server)': 1, 'hyok.v1.Hyok': 1 },
    'grpc.health.v1 answers SERVING to a gRPC-core probe',
  );
  t.same(r.generate, { keyName: 'demo', keyVersion: 1, dekBytes: 32 });
  t.same(r.unwrap, { sameDek: true, keyVersion: 1 });

  t.equal(r.tampered.code, 'INVALID_ARGUMENT', 'a bit-flipped envelope');
  t.equal(r.tampered.details?.code, 3, 'google.rpc.Status in grpc-status-details-bin');
  t.match(r.tampered.details?.errorInfo, [{ reason: 'INVALID_CIPHERTEXT', domain: 'hyokd.dev' }]);

  t.equal(r.batch.length, 2);
  t.same(r.batch[0], { code: 0, reason: '', sameDek: true });
  t.match(
    r.batch[1],
    { code: 3, reason: 'INVALID_CIPHERTEXT', sameDek: false },
    'wrong AAD fails its item only',
  );

  t.same(
    r.stream.map((s) => s.correlationId).sort(),
    ['c0', 'c1', 'c2'],
    'every stream message answered, by correlation id',
  );
  t.ok(
    r.stream.every((s) => s.code === 0 && s.sameDek),
    'stream unwraps',
  );

  t.equal(r.noClientCert, 'UNAVAILABLE', 'no client certificate: the handshake fails, nothing is served');

  // The request id and context the Python client sent reached the audit record (durable
  // before the answer left, so no flush is needed to read it).
  const gen = readRecords(h.auditDir).find((rec) => rec.requestId === 'py-gen-1');
  t.ok(gen, 'GenerateDataKey audited under the caller’s request id');
  t.same(gen?.context, { reason: 'interop' });
  t.equal(gen?.op, 'GenerateDataKey');
});
