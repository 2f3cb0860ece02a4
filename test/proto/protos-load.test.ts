// The protos load with @grpc/proto-loader using the options the server uses:
// keepCase=false (lowerCamelCase fields in JS), longs=String, enums=String, defaults=true,
// oneofs=true; and messages survive an encode/decode round trip without protoc.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import t from 'tap';

const protoDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto');
const options: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir],
};

type Method = grpc.MethodDefinition<unknown, unknown>;
function service(def: protoLoader.PackageDefinition, name: string): Record<string, Method> {
  const s = def[name] as unknown as Record<string, Method> | undefined;
  if (!s) throw new Error(`${name} not in package definition`);
  return s;
}

t.test('hyok.v1 loads with the data-plane service', async (t) => {
  const def = protoLoader.loadSync('hyok/v1/hyok.proto', options);
  const hyok = service(def, 'hyok.v1.Hyok');
  t.same(Object.keys(hyok).sort(), [
    'BatchUnwrap',
    'BatchWrap',
    'Echo',
    'GenerateDataKey',
    'GetKey',
    'Unwrap',
    'UnwrapStream',
    'Wrap',
  ]);
  t.equal(hyok.UnwrapStream!.requestStream, true);
  t.equal(hyok.UnwrapStream!.responseStream, true);
  t.equal(hyok.Unwrap!.requestStream, false);
  t.equal(hyok.Unwrap!.path, '/hyok.v1.Hyok/Unwrap');
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    hyok: { v1: { Hyok: grpc.ServiceClientConstructor } };
  };
  t.type(pkg.hyok.v1.Hyok, 'function', 'usable as a grpc-js client/service');
});

t.test('hyok.admin.v1 loads with the key-admin service', async (t) => {
  const def = protoLoader.loadSync('hyok/admin/v1/admin.proto', options);
  const admin = service(def, 'hyok.admin.v1.KeyAdmin');
  t.same(Object.keys(admin).sort(), [
    'AdoptKey',
    'BackupKey',
    'CreateImportKey',
    'CreateKey',
    'DeleteKey',
    'EnablePurgeProtection',
    'ExplainPolicy',
    'GetKey',
    'GetPolicy',
    'GetSecurityDomain',
    'ImportKey',
    'InitSecurityDomain',
    'JoinSecurityDomain',
    'ListKeys',
    'PurgeKey',
    'RecoverKey',
    'RestoreKey',
    'RotateKey',
    'SetKeyState',
    'SetPolicy',
    'SetRotationPolicy',
    'SetTags',
  ]);
});

t.test('Unwrap request/response round trip through the grpc-js serializers', async (t) => {
  const def = protoLoader.loadSync('hyok/v1/hyok.proto', options);
  const m = service(def, 'hyok.v1.Hyok').Unwrap!;
  const req = {
    requestId: 'req-1',
    context: { reason: 'nightly-batch', upstream_request_id: 'abc' },
    envelope: Buffer.from('HYKD envelope bytes'),
    aad: Buffer.from('tenant=7'),
    rewrap: { algorithm: 'ECDH_P256_HKDF_SHA256_AES_KWP', recipientPublicKey: Buffer.from([1, 2, 3]) },
  };
  const bytes = m.requestSerialize(req);
  t.ok(bytes.length > 0);
  const back = m.requestDeserialize(bytes) as typeof req;
  t.equal(back.requestId, 'req-1', 'lowerCamelCase fields (keepCase=false)');
  t.same(back.context, req.context);
  t.same(Buffer.from(back.envelope), req.envelope);
  t.same(Buffer.from(back.aad), req.aad);
  t.equal(back.rewrap.algorithm, 'ECDH_P256_HKDF_SHA256_AES_KWP', 'enums as strings');
  t.same(Buffer.from(back.rewrap.recipientPublicKey), Buffer.from([1, 2, 3]));

  const res = m.responseDeserialize(
    m.responseSerialize({ keyName: 'k', keyVersion: 4, plaintextDek: Buffer.alloc(32, 9) }),
  ) as {
    keyName: string;
    keyVersion: number;
    plaintextDek: Buffer;
    rewrapped: unknown;
  };
  t.equal(res.keyName, 'k');
  t.equal(res.keyVersion, 4);
  t.same(Buffer.from(res.plaintextDek), Buffer.alloc(32, 9));
  t.equal(res.rewrapped, null, 'an unset message field stays null with defaults=true');

  const empty = m.requestDeserialize(m.requestSerialize({})) as Record<string, unknown>;
  t.equal(empty['requestId'], '', 'defaults: empty string');
  t.same(empty['context'], {}, 'defaults: empty map');
});

t.test('batch results and admin oneofs round trip', async (t) => {
  const def = protoLoader.loadSync('hyok/v1/hyok.proto', options);
  const bu = service(def, 'hyok.v1.Hyok').BatchUnwrap!;
  const res = bu.responseDeserialize(
    bu.responseSerialize({
      results: [
        { status: { code: 0 }, result: { keyName: 'a', keyVersion: 1, plaintextDek: Buffer.alloc(16) } },
        {
          status: { code: 5, reason: 'KEY_NOT_FOUND', message: 'Key not found', metadata: { keyName: 'b' } },
        },
      ],
    }),
  ) as {
    results: {
      status: { code: number; reason: string; metadata: Record<string, string> };
      result: unknown;
    }[];
  };
  t.equal(res.results.length, 2);
  t.equal(res.results[0]!.status.code, 0);
  t.equal(res.results[1]!.status.reason, 'KEY_NOT_FOUND');
  t.same(res.results[1]!.status.metadata, { keyName: 'b' });
  t.equal(res.results[1]!.result, null);

  const adminDef = protoLoader.loadSync('hyok/admin/v1/admin.proto', options);
  const adopt = service(adminDef, 'hyok.admin.v1.KeyAdmin').AdoptKey!;
  const a = adopt.requestDeserialize(
    adopt.requestSerialize({ name: 'old', kind: 'AES_256', hsmLabel: 'legacy-kek', retentionDays: 30 }),
  ) as {
    selector: string;
    hsmLabel: string;
    kind: string;
    retentionDays: number;
  };
  t.equal(a.selector, 'hsmLabel', 'oneofs=true names the set member');
  t.equal(a.hsmLabel, 'legacy-kek');
  t.equal(a.kind, 'AES_256');
  t.equal(a.retentionDays, 30);
  const sks = service(adminDef, 'hyok.admin.v1.KeyAdmin').SetKeyState!;
  const withVersion = sks.requestDeserialize(
    sks.requestSerialize({ name: 'k', enabled: false, version: 3 }),
  ) as { version: number };
  t.equal(withVersion.version, 3, 'proto3 optional version');
});

t.test('google.rpc Status/ErrorInfo use the official field numbers', async (t) => {
  const root = new protobuf.Root();
  root.resolvePath = (_o, target) => join(protoDir, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  const ErrorInfo = root.lookupType('google.rpc.ErrorInfo');
  const Status = root.lookupType('google.rpc.Status');
  // reason = 1, domain = 2, metadata = 3 (map entry key = 1, value = 2)
  const info = Buffer.from(
    ErrorInfo.encode(ErrorInfo.fromObject({ reason: 'R', domain: 'D', metadata: { k: 'v' } })).finish(),
  );
  t.equal(info.toString('hex'), '0a0152' + '120144' + '1a06' + '0a016b' + '120176');
  // code = 1, message = 2, details = 3 (Any: type_url = 1, value = 2)
  const st = Buffer.from(
    Status.encode(
      Status.fromObject({ code: 5, message: 'm', details: [{ type_url: 'u', value: Buffer.from([7]) }] }),
    ).finish(),
  );
  t.equal(st.toString('hex'), '0805' + '12016d' + '1a06' + '0a0175' + '120107');
  const loaded = protoLoader.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], options);
  t.ok(loaded['google.rpc.Status'] && loaded['google.rpc.ErrorInfo'], 'proto-loader loads them too');
});
