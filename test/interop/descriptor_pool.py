"""The reflection descriptors in a strict descriptor pool (Python protobuf: the checks of
protoc's C++ pool, which Go and grpcurl apply too).

Run by test/server/reflection-descriptors.test.ts with Debian's python3-protobuf. Reads a
serialized FileDescriptorSet from the path in argv[1], adds every file to a fresh pool in
dependency order (a file whose imports are missing is refused, as a gRPC-core client
refuses it), and prints {"files": n, "setKeyStateVersionHasPresence": bool}.
"""

import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool


def main():
    with open(sys.argv[1], "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    pending = {f.name: f for f in fds.file}
    while pending:
        ready = [n for n, f in pending.items() if all(d not in pending for d in f.dependency)]
        if not ready:
            raise SystemExit("unresolvable: %s" % sorted(pending))
        for n in ready:
            pool.Add(pending.pop(n))
    svc = pool.FindServiceByName("hyok.admin.v1.KeyAdmin")
    version = svc.methods_by_name["SetKeyState"].input_type.fields_by_name["version"]
    print(json.dumps({"files": len(fds.file), "setKeyStateVersionHasPresence": version.has_presence}))


if __name__ == "__main__":
    main()
