// The file descriptors server reflection hands out, shaped as protoc would make them.
//
// proto-loader's own descriptors (`fileDescriptorProtos`, from protobufjs's
// Root#toDescriptor) have one file per package, named after it ("hyok_v1.proto"), with no
// `dependency` list, type references relative to the referring scope, and field names
// camelCased when the service is loaded with keepCase: false. protobufjs and grpc-js
// clients cope; gRPC core (Python's grpcio, C++), Go and grpcurl do not: a file that uses
// google.protobuf.Timestamp without importing the file that defines it is refused
// ("google.protobuf.Timestamp is not defined"). So the descriptors are built here from
// the .proto files themselves: one per file, named by its import path, listing the files
// it imports, type references fully qualified, field names as written in the file.

import { isAbsolute, join, relative, sep } from 'node:path';
import { existsSync } from 'node:fs';
import protobuf from 'protobufjs';
import descriptorExt from 'protobufjs/ext/descriptor/index.js';

interface FieldProto {
  name: string;
  typeName?: string;
  jsonName?: string;
  proto3Optional?: boolean;
}
interface MessageProto {
  name: string;
  field: FieldProto[];
  nestedType: MessageProto[];
  options?: { mapEntry?: boolean };
}
interface MethodProto {
  inputType: string;
  outputType: string;
}
interface ServiceProto {
  method: MethodProto[];
}
interface FileProto {
  name: string;
  package?: string;
  dependency: string[];
  messageType: MessageProto[];
  enumType: unknown[];
  service: ServiceProto[];
  syntax?: string;
}
interface DescriptorExt {
  FileDescriptorProto: {
    create(props: Record<string, unknown>): FileProto;
    encode(m: FileProto): { finish(): Uint8Array };
  };
}
const ext = descriptorExt as unknown as DescriptorExt;

type Declared = protobuf.Type | protobuf.Enum | protobuf.Service;

/** The file name protobufjs's bundled well-known types (filename null) come from. */
function wellKnownFiles(): Map<string, string> {
  const byType = new Map<string, string>();
  const common = protobuf.common as unknown as Record<string, { nested?: Record<string, unknown> }>;
  const walk = (file: string, prefix: string, nested: Record<string, unknown> | undefined): void => {
    for (const [name, def] of Object.entries(nested ?? {})) {
      const fqn = `${prefix}.${name}`;
      const d = def as { nested?: Record<string, unknown>; fields?: unknown; values?: unknown };
      if (d.fields !== undefined || d.values !== undefined) byType.set(fqn, file);
      if (d.nested) walk(file, fqn, d.nested);
    }
  };
  for (const [file, json] of Object.entries(common)) {
    if (file.endsWith('.proto')) walk(file, '', json.nested);
  }
  return byType;
}

/** Lower camel case, as protoc fills json_name. */
function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function upperCamel(name: string): string {
  const j = jsonName(name);
  return j.charAt(0).toUpperCase() + j.slice(1);
}

/** A .proto file by its import path under an include directory (its descriptor's name). */
export interface ProtoSource {
  includeDir: string;
  file: string;
}

/** Built once per set of sources: every server start asks again, and parsing takes 12-30 ms. */
const built = new Map<string, Buffer[]>();

/** Serialized FileDescriptorProtos for `sources` and every file they import, transitively. */
export function reflectionDescriptors(sources: readonly ProtoSource[]): Buffer[] {
  const key = JSON.stringify(sources.map((s) => [s.includeDir, s.file]));
  let out = built.get(key);
  if (!out) {
    out = build(sources);
    built.set(key, out);
  }
  return out;
}

function build(sources: readonly ProtoSource[]): Buffer[] {
  const includeDirs = [...new Set(sources.map((s) => s.includeDir))];
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (isAbsolute(target)) return target;
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    // Not found: protobufjs then uses its bundled copy (the google/protobuf files).
    return target;
  };
  root.loadSync(
    sources.map((s) => join(s.includeDir, s.file)),
    { keepCase: true },
  );
  root.resolveAll();
  const wkt = wellKnownFiles();

  const fileOf = (o: protobuf.ReflectionObject): string => {
    if (o.filename) {
      const dir = includeDirs.find((d) => o.filename!.startsWith(d + sep));
      if (dir) return relative(dir, o.filename);
    }
    const known = wkt.get(o.fullName);
    if (!known) throw new Error(`reflection: no file for ${o.fullName}`);
    return known;
  };

  // Every declared message, enum and service, by file, in declaration order.
  const declared = new Map<string, { pkg: string; items: Declared[] }>();
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const o of ns.nestedArray) {
      if (o instanceof protobuf.Type || o instanceof protobuf.Enum || o instanceof protobuf.Service) {
        const file = fileOf(o);
        const pkg = (o.parent?.fullName ?? '').replace(/^\./, '');
        const entry = declared.get(file) ?? { pkg, items: [] };
        if (entry.pkg !== pkg) throw new Error(`reflection: ${file} declares types in two packages`);
        entry.items.push(o);
        declared.set(file, entry);
      } else if (o instanceof protobuf.Namespace) {
        walk(o);
      }
    }
  };
  walk(root);

  const out: Buffer[] = [];
  for (const [name, { pkg, items }] of declared) {
    const deps = new Set<string>();
    const absolute = (scope: protobuf.NamespaceBase, ref: string): string => {
      const target = scope.lookup(ref, [protobuf.Type, protobuf.Enum]) as
        protobuf.Type | protobuf.Enum | null;
      if (!target) throw new Error(`reflection: ${ref} not found from ${scope.fullName}`);
      const file = fileOf(target);
      if (file !== name) deps.add(file);
      return target.fullName;
    };
    const fixMessage = (m: MessageProto, type: protobuf.Type): void => {
      const mapEntries = new Map(m.nestedType.filter((n) => n.options?.mapEntry).map((n) => [n.name, n]));
      for (const f of m.field) {
        f.jsonName = jsonName(f.name);
        // protobufjs sets this under its snake_case name, which its encoder ignores.
        if (type.fields[f.name]?.options?.proto3_optional === true) f.proto3Optional = true;
        if (!f.typeName) continue;
        // A map field's entry type exists only in the descriptor; protoc names it
        // <FieldName>Entry (protobufjs: <FieldName>).
        const entry = mapEntries.get(f.typeName);
        if (entry) {
          entry.name = `${upperCamel(f.name)}Entry`;
          f.typeName = `${type.fullName}.${entry.name}`;
        } else {
          f.typeName = absolute(type, f.typeName);
        }
      }
      for (const n of m.nestedType) {
        if (n.options?.mapEntry) {
          for (const f of n.field) {
            f.jsonName = jsonName(f.name);
            if (f.typeName) f.typeName = absolute(type, f.typeName);
          }
          continue;
        }
        const nested = type.get(n.name);
        if (!(nested instanceof protobuf.Type))
          throw new Error(`reflection: ${type.fullName}.${n.name} is not a type`);
        fixMessage(n, nested);
      }
    };
    const file = ext.FileDescriptorProto.create({ name, package: pkg, syntax: 'proto3' });
    for (const o of items) {
      if (o instanceof protobuf.Type) {
        const m = (o as unknown as { toDescriptor(syntax: string): MessageProto }).toDescriptor('proto3');
        fixMessage(m, o);
        file.messageType.push(m);
      } else if (o instanceof protobuf.Enum) {
        file.enumType.push((o as unknown as { toDescriptor(): unknown }).toDescriptor());
      } else {
        const s = (o as unknown as { toDescriptor(): ServiceProto }).toDescriptor();
        for (const m of s.method) {
          m.inputType = absolute(o, m.inputType);
          m.outputType = absolute(o, m.outputType);
        }
        file.service.push(s);
      }
    }
    file.dependency = [...deps].sort();
    out.push(Buffer.from(ext.FileDescriptorProto.encode(file).finish()));
  }
  return out;
}
