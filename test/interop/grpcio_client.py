"""A hyok.v1 client on another gRPC implementation: gRPC core through Python's grpcio.

It is given no generated code and no .proto: it asks the server's reflection service
(grpc.reflection.v1) for the descriptors of hyok.v1.Hyok, builds the message classes
from them with protobuf's descriptor pool, and calls the service. The only types it
declares itself are those of the reflection protocol, google.rpc.Status/ErrorInfo (error
details) and grpc.health.v1, which are standard, not hyokd's.

Usage (run by test/server/grpcio-client.test.ts with Debian's python3-grpcio and
python3-protobuf):
    python3 grpcio_client.py PORT CA_PEM CERT_PEM KEY_PEM
Prints one JSON object with what each step saw; exits non-zero only if a step could not
run at all. PEM files by path: no key material in argv.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _standard_types(pool):
    """grpc.reflection.v1 (the parts used here) and google.rpc.Status/ErrorInfo."""
    refl = descriptor_pb2.FileDescriptorProto(
        name="interop/reflection.proto", package="grpc.reflection.v1", syntax="proto3"
    )
    req = refl.message_type.add(name="ServerReflectionRequest")
    req.oneof_decl.add(name="message_request")
    _field(req, "host", 1, F.TYPE_STRING)
    _field(req, "file_containing_symbol", 4, F.TYPE_STRING, oneof=0)
    _field(req, "list_services", 7, F.TYPE_STRING, oneof=0)
    fdr = refl.message_type.add(name="FileDescriptorResponse")
    _field(fdr, "file_descriptor_proto", 1, F.TYPE_BYTES, F.LABEL_REPEATED)
    svc = refl.message_type.add(name="ServiceResponse")
    _field(svc, "name", 1, F.TYPE_STRING)
    lsr = refl.message_type.add(name="ListServiceResponse")
    _field(lsr, "service", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".grpc.reflection.v1.ServiceResponse")
    err = refl.message_type.add(name="ErrorResponse")
    _field(err, "error_code", 1, F.TYPE_INT32)
    _field(err, "error_message", 2, F.TYPE_STRING)
    res = refl.message_type.add(name="ServerReflectionResponse")
    res.oneof_decl.add(name="message_response")
    _field(res, "valid_host", 1, F.TYPE_STRING)
    _field(res, "file_descriptor_response", 4, F.TYPE_MESSAGE, type_name=".grpc.reflection.v1.FileDescriptorResponse", oneof=0)
    _field(res, "list_services_response", 6, F.TYPE_MESSAGE, type_name=".grpc.reflection.v1.ListServiceResponse", oneof=0)
    _field(res, "error_response", 7, F.TYPE_MESSAGE, type_name=".grpc.reflection.v1.ErrorResponse", oneof=0)
    pool.Add(refl)

    rpc = descriptor_pb2.FileDescriptorProto(name="interop/status.proto", package="google.rpc", syntax="proto3")
    anyp = rpc.message_type.add(name="Any")  # google.protobuf.Any's wire shape, kept local
    _field(anyp, "type_url", 1, F.TYPE_STRING)
    _field(anyp, "value", 2, F.TYPE_BYTES)
    status = rpc.message_type.add(name="Status")
    _field(status, "code", 1, F.TYPE_INT32)
    _field(status, "message", 2, F.TYPE_STRING)
    _field(status, "details", 3, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".google.rpc.Any")
    info = rpc.message_type.add(name="ErrorInfo")
    _field(info, "reason", 1, F.TYPE_STRING)
    _field(info, "domain", 2, F.TYPE_STRING)
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, F.TYPE_STRING)
    _field(entry, "value", 2, F.TYPE_STRING)
    _field(info, "metadata", 3, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".google.rpc.ErrorInfo.MetadataEntry")
    pool.Add(rpc)

    health = descriptor_pb2.FileDescriptorProto(
        name="interop/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    hreq = health.message_type.add(name="HealthCheckRequest")
    _field(hreq, "service", 1, F.TYPE_STRING)
    hres = health.message_type.add(name="HealthCheckResponse")
    _field(hres, "status", 1, F.TYPE_INT32)  # the ServingStatus enum's wire form
    pool.Add(health)


def _class(pool, name):
    d = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(d)
    return message_factory.MessageFactory(pool).GetPrototype(d)


def _add_files(pool, blobs):
    """Adds serialized FileDescriptorProtos in dependency order; returns their names."""
    pending = {}
    for b in blobs:
        fd = descriptor_pb2.FileDescriptorProto.FromString(b)
        pending[fd.name] = fd
    added = []
    while pending:
        progress = False
        for name, fd in list(pending.items()):
            if all(dep not in pending for dep in fd.dependency):
                pool.Add(fd)
                added.append(name)
                del pending[name]
                progress = True
        if not progress:
            raise RuntimeError("reflection answered files whose dependencies are missing: %s" % sorted(pending))
    return added


def _error_details(pool, err):
    """The google.rpc.Status in grpc-status-details-bin, as plain data."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = _class(pool, "google.rpc.Status").FromString(value)
            infos = []
            for d in status.details:
                if d.type_url.endswith("/google.rpc.ErrorInfo"):
                    i = _class(pool, "google.rpc.ErrorInfo").FromString(d.value)
                    infos.append({"reason": i.reason, "domain": i.domain, "metadata": dict(i.metadata)})
            return {"code": status.code, "errorInfo": infos}
    return None


def main():
    port, ca_path, cert_path, key_path = sys.argv[1:5]
    with open(ca_path, "rb") as f:
        ca = f.read()
    with open(cert_path, "rb") as f:
        cert = f.read()
    with open(key_path, "rb") as f:
        key = f.read()
    target = "127.0.0.1:%s" % port
    # The server certificate names localhost (SNI and host name check).
    options = [("grpc.ssl_target_name_override", "localhost")]
    out = {"grpcio": grpc.__version__}
    pool = descriptor_pool.DescriptorPool()
    _standard_types(pool)

    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert), options)
    Req = _class(pool, "grpc.reflection.v1.ServerReflectionRequest")
    Res = _class(pool, "grpc.reflection.v1.ServerReflectionResponse")
    reflect = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=Req.SerializeToString,
        response_deserializer=Res.FromString,
    )
    services, blobs = [], []
    for r in reflect(iter([Req(list_services=""), Req(file_containing_symbol="hyok.v1.Hyok")]), timeout=10):
        which = r.WhichOneof("message_response")
        if which == "list_services_response":
            services += [s.name for s in r.list_services_response.service]
        elif which == "file_descriptor_response":
            blobs += list(r.file_descriptor_response.file_descriptor_proto)
        elif which == "error_response":
            raise RuntimeError("reflection error: %s" % r.error_response.error_message)
    out["services"] = services
    out["files"] = _add_files(pool, blobs)

    hyok = pool.FindServiceByName("hyok.v1.Hyok")
    out["methods"] = [m.name for m in hyok.methods]

    def call(method, kind="unary"):
        m = hyok.methods_by_name[method]
        req_cls = _class(pool, m.input_type.full_name)
        res_cls = _class(pool, m.output_type.full_name)
        make = channel.unary_unary if kind == "unary" else channel.stream_stream
        stub = make("/hyok.v1.Hyok/%s" % method, request_serializer=req_cls.SerializeToString,
                    response_deserializer=res_cls.FromString)
        return req_cls, stub

    # grpc.health.v1, as a load balancer's probe asks it: 1 = SERVING.
    HReq = _class(pool, "grpc.health.v1.HealthCheckRequest")
    HRes = _class(pool, "grpc.health.v1.HealthCheckResponse")
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=HReq.SerializeToString, response_deserializer=HRes.FromString
    )
    out["health"] = {name or "(server)": check(HReq(service=name), timeout=10).status for name in ("", "hyok.v1.Hyok")}

    GenReq, gen = call("GenerateDataKey")
    g = gen(GenReq(key_name="demo", aad=b"interop-aad", request_id="py-gen-1", context={"reason": "interop"}), timeout=10)
    out["generate"] = {"keyName": g.key_name, "keyVersion": g.key_version, "dekBytes": len(g.plaintext_dek)}

    UnReq, unwrap = call("Unwrap")
    u = unwrap(UnReq(envelope=g.envelope, aad=b"interop-aad"), timeout=10)
    out["unwrap"] = {"sameDek": u.plaintext_dek == g.plaintext_dek, "keyVersion": u.key_version}

    flipped = bytearray(g.envelope)
    flipped[-1] ^= 0x01
    try:
        unwrap(UnReq(envelope=bytes(flipped), aad=b"interop-aad"), timeout=10)
        out["tampered"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["tampered"] = {"code": e.code().name, "details": _error_details(pool, e)}

    BReq, batch = call("BatchUnwrap")
    br = BReq()
    for aad in (b"interop-aad", b"wrong-aad"):
        item = br.items.add()
        item.envelope = g.envelope
        item.aad = aad
    b = batch(br, timeout=10)
    out["batch"] = [
        {"code": r.status.code, "reason": r.status.reason, "sameDek": r.result.plaintext_dek == g.plaintext_dek}
        for r in b.results
    ]

    SReq, stream = call("UnwrapStream", "stream")
    msgs = []
    for i in range(3):
        s = SReq(correlation_id="c%d" % i)
        s.request.envelope = g.envelope
        s.request.aad = b"interop-aad"
        msgs.append(s)
    out["stream"] = [
        {"correlationId": r.correlation_id, "code": r.status.code, "sameDek": r.result.plaintext_dek == g.plaintext_dek}
        for r in stream(iter(msgs), timeout=10)
    ]
    channel.close()

    # Without a client certificate the handshake fails: no call gets through.
    bare = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options)
    bare_unwrap = bare.unary_unary("/hyok.v1.Hyok/Unwrap", request_serializer=UnReq.SerializeToString)
    try:
        bare_unwrap(UnReq(envelope=g.envelope, aad=b"interop-aad"), timeout=10)
        out["noClientCert"] = "OK"
    except grpc.RpcError as e:
        out["noClientCert"] = e.code().name
    bare.close()

    print(json.dumps(out))


if __name__ == "__main__":
    main()
