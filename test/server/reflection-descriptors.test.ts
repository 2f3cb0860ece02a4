// The descriptors reflection serves are shaped as protoc makes them: one per .proto file,
// with its imports listed, fully qualified type references and the field names of the
// file. A strict descriptor pool (Python protobuf, the same checks as C++ and Go) accepts
// all of them.
import { createRequire } from 'node:module';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { protoDir } from '../../src/errors.js';
import { ADMIN_PROTO_FILE } from '../../src/server/admin-proto.js';
import { HYOK_PROTO_FILE } from '../../src/server/proto.js';
import { HEALTH_PROTO } from '../../src/server/server.js';
import { runPython } from '../helpers/python.js';
import { reflectionDescriptors } from '../../src/server/reflection-descriptors.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- decoded descriptor messages are untyped */
const require = createRequire(import.meta.url);
const descriptor = require('protobufjs/ext/descriptor') as any;

const blobs = reflectionDescriptors([
  { includeDir: protoDir(), file: HYOK_PROTO_FILE },
  { includeDir: protoDir(), file: ADMIN_PROTO_FILE },
  HEALTH_PROTO,
]);
const files = blobs.map((b) => descriptor.FileDescriptorProto.decode(b)) as any[];
const byName = new Map(files.map((f) => [f.name as string, f]));

t.test('one descriptor per file, named by its import path, with its imports', async (t) => {
  t.same([...byName.keys()].sort(), [
    'google/protobuf/duration.proto',
    'google/protobuf/timestamp.proto',
    'health/v1/health.proto',
    'hyok/admin/v1/admin.proto',
    'hyok/v1/hyok.proto',
  ]);
  t.same(byName.get(HYOK_PROTO_FILE).dependency, ['google/protobuf/timestamp.proto']);
  t.same(byName.get(ADMIN_PROTO_FILE).dependency, [
    'google/protobuf/duration.proto',
    'google/protobuf/timestamp.proto',
  ]);
  t.equal(byName.get(HYOK_PROTO_FILE).package, 'hyok.v1');
  t.equal(byName.get('google/protobuf/timestamp.proto').package, 'google.protobuf');
  t.equal(byName.get(HEALTH_PROTO.file).package, 'grpc.health.v1');
});

t.test('type references are fully qualified and resolve inside the set', async (t) => {
  const declared = new Set<string>();
  const collect = (prefix: string, m: any) => {
    const fqn = `${prefix}.${m.name}`;
    declared.add(fqn);
    for (const n of m.nestedType ?? []) collect(fqn, n);
    for (const e of m.enumType ?? []) declared.add(`${fqn}.${e.name}`);
  };
  for (const f of files) {
    for (const m of f.messageType ?? []) collect(`.${f.package}`, m);
    for (const e of f.enumType ?? []) declared.add(`.${f.package}.${e.name}`);
  }
  const refs: string[] = [];
  const fields = (m: any) => {
    for (const fd of m.field ?? []) if (fd.typeName) refs.push(fd.typeName);
    for (const n of m.nestedType ?? []) fields(n);
  };
  for (const f of files) {
    for (const m of f.messageType ?? []) fields(m);
    for (const s of f.service ?? []) for (const m of s.method) refs.push(m.inputType, m.outputType);
  }
  t.ok(refs.length > 50, `${refs.length} references`);
  t.same(
    refs.filter((r) => !r.startsWith('.') || !declared.has(r)),
    [],
    'none relative, none dangling',
  );
});

t.test('field names as written in the .proto, maps and optional fields as protoc has them', async (t) => {
  const hyok = byName.get(HYOK_PROTO_FILE);
  const gdk = hyok.messageType.find((m: any) => m.name === 'GenerateDataKeyRequest');
  t.same(
    gdk.field.map((f: any) => [f.name, f.jsonName]),
    [
      ['request_id', 'requestId'],
      ['context', 'context'],
      ['key_name', 'keyName'],
      ['dek_length', 'dekLength'],
      ['aad', 'aad'],
      ['rewrap', 'rewrap'],
    ],
  );
  const entry = gdk.nestedType.find((n: any) => n.options?.mapEntry);
  t.equal(entry?.name, 'ContextEntry');
  t.equal(
    gdk.field.find((f: any) => f.name === 'context').typeName,
    '.hyok.v1.GenerateDataKeyRequest.ContextEntry',
  );
  const stream = hyok.service[0].method.find((m: any) => m.name === 'UnwrapStream');
  t.match(stream, { clientStreaming: true, serverStreaming: true }, 'a bidi stream says so');
  const admin = byName.get(ADMIN_PROTO_FILE);
  const setState = admin.messageType.find((m: any) => m.name === 'SetKeyStateRequest');
  const version = setState.field.find((f: any) => f.name === 'version');
  t.equal(version.proto3Optional, true, 'proto3 optional keeps its presence');
});

t.test('a strict descriptor pool (Python protobuf) builds every file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-descriptors-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const set = join(dir, 'set.pb');
  writeFileSync(set, Buffer.from(descriptor.FileDescriptorSet.encode({ file: files }).finish()));
  const r = await runPython('descriptor_pool.py', { args: [set] });
  t.same(r, { files: 5, setKeyStateVersionHasPresence: true });
});
