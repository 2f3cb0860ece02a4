// The layers under hyokd, each alone, for bench/gc.ts: a server that answers every call
// like a unary gRPC echo with fixed bytes, over the same mutual TLS (the daemon's dev PKI).
//   node bare-server.js http2   <pki-dir> <path>   node:http2 only: headers, one message, trailers
//   node bare-server.js grpc-js <pki-dir> <path>   @grpc/grpc-js with one method at <path>,
//                                                 pass-through (de)serializers, no interceptors
//   node bare-server.js grpc-js-proto <pki-dir>    @grpc/grpc-js with hyokd's own hyok.v1 service
//                                                 definition (its protobuf codec); Echo answers
//                                                 with the request's payload, nothing else is served
// Prints `bare server on 127.0.0.1:<port>` on stderr once listening; stops on SIGTERM.
import * as grpc from '@grpc/grpc-js';
import { createSecureServer } from 'node:http2';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hyokServiceDefinition } from '../../src/server/proto.js';

/** A gRPC message frame holding 40 zero bytes: an echo-sized answer. */
const ANSWER = Buffer.concat([Buffer.from([0, 0, 0, 0, 40]), Buffer.alloc(40)]);

function announce(port: number): void {
  process.stderr.write(`bare server on 127.0.0.1:${port}\n`);
}

function http2Only(pki: string): void {
  const server = createSecureServer({
    key: readFileSync(join(pki, 'server.key')),
    cert: readFileSync(join(pki, 'server.pem')),
    ca: readFileSync(join(pki, 'ca.pem')),
    requestCert: true,
    rejectUnauthorized: true,
  });
  server.on('stream', (stream) => {
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(ANSWER.subarray(5));
    });
  });
  process.once('SIGTERM', () => server.close(() => process.exit(0)));
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    announce(typeof a === 'object' && a ? a.port : 0);
  });
}

/** @grpc/grpc-js alone: one method at `path`, pass-through (de)serializers. */
function grpcJsOnly(pki: string, path: string): void {
  const server = new grpc.Server();
  const same = (b: Buffer) => b;
  const answer = ANSWER.subarray(5);
  server.addService(
    {
      Echo: {
        path,
        requestStream: false,
        responseStream: false,
        requestSerialize: same,
        requestDeserialize: same,
        responseSerialize: same,
        responseDeserialize: same,
      },
    },
    { Echo: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, answer) },
  );
  serveGrpc(server, pki);
}

/** @grpc/grpc-js with hyokd's hyok.v1 definition (its codec); Echo returns the payload. */
function grpcJsProto(pki: string): void {
  type EchoMessage = { payload?: Buffer };
  const server = new grpc.Server();
  const echo = (call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>, cb: grpc.sendUnaryData<EchoMessage>) =>
    cb(null, { payload: call.request.payload ?? Buffer.alloc(0) });
  server.addService(hyokServiceDefinition(), { Echo: echo });
  serveGrpc(server, pki);
}

/** Mutual TLS with the PKI's server certificate, any port on 127.0.0.1, stop on SIGTERM. */
function serveGrpc(server: grpc.Server, pki: string): void {
  const creds = grpc.ServerCredentials.createSsl(
    readFileSync(join(pki, 'ca.pem')),
    [
      {
        private_key: readFileSync(join(pki, 'server.key')),
        cert_chain: readFileSync(join(pki, 'server.pem')),
      },
    ],
    true,
  );
  process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
  server.bindAsync('127.0.0.1:0', creds, (err, port) => {
    if (err) {
      process.stderr.write(`bind failed: ${err.message}\n`);
      process.exit(1);
    }
    announce(port);
  });
}

const [kind, pki, path] = process.argv.slice(2);
if (pki && kind === 'grpc-js-proto') grpcJsProto(pki);
else if (pki && path && kind === 'http2') http2Only(pki);
else if (pki && path && kind === 'grpc-js') grpcJsOnly(pki, path);
else {
  process.stderr.write('usage: bare-server.js http2|grpc-js <pki-dir> <path> | grpc-js-proto <pki-dir>\n');
  process.exit(2);
}
