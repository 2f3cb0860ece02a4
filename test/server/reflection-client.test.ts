/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// A client that knows nothing of hyok.proto: it asks the server's reflection service for
// the descriptors of hyok.v1.Hyok, builds its message types from them (protobufjs
// descriptor extension), and calls GenerateDataKey and Unwrap with a hand-made
// generic client.
import { createRequire } from 'node:module';
import { credentials, loadPackageDefinition, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import t from 'tap';
import { startHarness } from './fixtures.js';

const require = createRequire(import.meta.url);
// The descriptor extension is CommonJS and patches protobufjs with Root.fromDescriptor.
const descriptor = require('protobufjs/ext/descriptor') as {
  FileDescriptorSet: protobuf.Type;
};
const reflectionProto = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');

const h = await startHarness();
t.teardown(() => h.close());

const creds = () =>
  credentials.createSsl(
    Buffer.from(h.ca.certPem),
    Buffer.from(h.clientCert.keyPem),
    Buffer.from(h.clientCert.certPem),
  );

async function fetchDescriptors(symbol: string): Promise<Buffer[]> {
  const pkg = loadPackageDefinition(loadSync(reflectionProto, { keepCase: true })) as any;
  const rc = new pkg.grpc.reflection.v1.ServerReflection(`127.0.0.1:${h.server.port}`, creds());
  try {
    const stream = rc.ServerReflectionInfo(new Metadata());
    const out: Buffer[] = [];
    const listed: string[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (r: any) => {
        if (r.list_services_response)
          listed.push(...r.list_services_response.service.map((s: any) => s.name));
        if (r.file_descriptor_response) out.push(...r.file_descriptor_response.file_descriptor_proto);
        if (r.error_response) reject(new Error(r.error_response.error_message));
      });
      stream.on('end', resolve);
      stream.on('error', reject);
      stream.write({ list_services: '' });
      stream.write({ file_containing_symbol: symbol });
      stream.end();
    });
    t.ok(listed.includes('hyok.v1.Hyok'), 'reflection lists hyok.v1.Hyok');
    return out;
  } finally {
    rc.close();
  }
}

t.test('a reflection-only client calls GenerateDataKey and Unwrap', async (t) => {
  const files = await fetchDescriptors('hyok.v1.Hyok');
  t.ok(files.length >= 1, 'got file descriptors');
  const set = descriptor.FileDescriptorSet.create({
    file: files.map((f) => (descriptor as any).FileDescriptorProto.decode(f)),
  });
  const root = (protobuf.Root as any).fromDescriptor(set) as protobuf.Root;
  root.resolveAll(); // every referenced type (google.protobuf.Timestamp included) came with the answer
  t.ok(root.lookupType('hyok.v1.KeyVersionInfo').fields.created_time!.resolvedType, 'Timestamp resolved');
  const svc = root.lookupService('hyok.v1.Hyok');
  const method = (name: string) => {
    const m = svc.methods[name]!.resolve() as protobuf.Method;
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    return {
      path: `/hyok.v1.Hyok/${name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: object) => Buffer.from(req.encode(req.fromObject(v)).finish()),
      requestDeserialize: (b: Buffer) => req.decode(b),
      responseSerialize: (v: object) => Buffer.from(res.encode(res.fromObject(v)).finish()),
      responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), { bytes: Buffer, defaults: true }),
      originalName: name,
    };
  };
  const Client = makeGenericClientConstructor(
    { GenerateDataKey: method('GenerateDataKey'), Unwrap: method('Unwrap') } as any,
    'Hyok',
  );
  const client = new Client(`127.0.0.1:${h.server.port}`, creds()) as any;
  t.teardown(() => client.close());
  const unary = (name: string, req: object) =>
    new Promise<any>((resolve, reject) =>
      client[name](req, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))),
    );
  // Field names as hyok.proto writes them (key_name), not as a loader renamed them.
  const gdkType = root.lookupType('hyok.v1.GenerateDataKeyRequest');
  t.ok(gdkType.fields.key_name, 'the request type came from the server descriptors');
  const g = await unary('GenerateDataKey', { key_name: 'demo', aad: Buffer.from('r') });
  t.equal(g.plaintext_dek.length, 32);
  const u = await unary('Unwrap', { envelope: g.envelope, aad: Buffer.from('r') });
  t.same(Buffer.from(u.plaintext_dek), Buffer.from(g.plaintext_dek));
  t.equal(u.key_name, 'demo');
  t.equal(u.key_version, 1);
});
