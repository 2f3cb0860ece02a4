// The metrics HTTP endpoint: status codes, content types, readiness flipping, and
// malformed requests that must not bring it down.
import t, { type Test } from 'tap';
import { request } from 'node:http';
import { connect } from 'node:net';
import {
  Metrics,
  startMetricsServer,
  parseListen,
  readinessFrom,
  type Readiness,
} from '../../src/metrics/index.js';
import type { HsmState } from '../../src/hsm/types.js';
import { parseExposition, value } from './exposition.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends raw bytes and returns what comes back before the server closes or 1 s passes. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 1000);
    s.setEncoding('utf8');
    s.on('data', (c: string) => (out += c));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', reject);
    s.write(bytes);
  });
}

async function start(t: Test, ready: () => Readiness = () => ({ ready: true, reasons: [] })) {
  const metrics = new Metrics({ defaultMetrics: false, version: '9.9.9' });
  const srv = await startMetricsServer({ listen: '127.0.0.1:0', metrics, ready });
  t.teardown(() => srv.close());
  return { metrics, srv };
}

t.test('parseListen', async (t) => {
  t.same(parseListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  t.same(parseListen('localhost:0'), { host: 'localhost', port: 0 });
  t.same(parseListen('[::1]:9464'), { host: '::1', port: 9464 });
  t.same(parseListen('0.0.0.0:65535'), { host: '0.0.0.0', port: 65535 });
  for (const bad of [
    '9464',
    ':9464',
    'host:',
    'host:port',
    'host:65536',
    '::1:9464',
    'a b:1',
    'host:99999',
    '',
  ]) {
    t.throws(() => parseListen(bad), TypeError, `${JSON.stringify(bad)} is refused`);
  }
});

t.test('GET /metrics is the text exposition with its content type', async (t) => {
  const { metrics, srv } = await start(t);
  t.ok(srv.port > 0, 'a port was bound');
  metrics.callFinished({
    service: 'hyok.v1.Hyok',
    method: 'Wrap',
    status: 'OK',
    reason: '',
    identityClass: 'client',
    seconds: 0.001,
    items: 1,
  });
  const r = await get(srv.port, '/metrics');
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.equal(r.headers['cache-control'], 'no-store');
  const e = parseExposition(r.body);
  t.equal(value(e, 'hyokd_requests_total', { method: 'Wrap' }), 1);
  t.equal(value(e, 'hyokd_build_info', { version: '9.9.9' }), 1);
  const q = await get(srv.port, '/metrics?name[]=x');
  t.equal(q.status, 200, 'a query string is ignored');
  const h = await get(srv.port, '/metrics', 'HEAD');
  t.equal(h.status, 200, 'HEAD is answered');
  t.equal(h.body, '', 'without a body');
});

t.test('/healthz is 200 even when not ready', async (t) => {
  const { srv } = await start(t, () => ({ ready: false, reasons: ['hsm: recovering'] }));
  const r = await get(srv.port, '/healthz');
  t.equal(r.status, 200);
  t.equal(r.body, 'ok\n');
});

t.test('/readyz follows the HSM and the audit sink', async (t) => {
  let hsm: HsmState | undefined;
  let audit: boolean | undefined;
  const { srv } = await start(
    t,
    readinessFrom({
      hsm: () => hsm,
      audit: () => audit,
    }),
  );
  let r = await get(srv.port, '/readyz');
  t.equal(r.status, 503, 'nothing started');
  t.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  t.same(JSON.parse(r.body), { ready: false, reasons: ['hsm: not started', 'audit: not started'] });

  hsm = 'ready';
  audit = true;
  r = await get(srv.port, '/readyz');
  t.equal(r.status, 200);
  t.same(JSON.parse(r.body), { ready: true, reasons: [] });

  audit = false;
  r = await get(srv.port, '/readyz');
  t.equal(r.status, 503, 'audit fails closed: not ready');
  t.same(JSON.parse(r.body).reasons, ['audit: unhealthy']);

  audit = true;
  hsm = 'recovering';
  r = await get(srv.port, '/readyz');
  t.equal(r.status, 503);
  t.same(JSON.parse(r.body).reasons, ['hsm: recovering']);

  hsm = 'ready';
  r = await get(srv.port, '/readyz');
  t.equal(r.status, 200, 'recovers by itself');
});

t.test('/readyz when the readiness check itself fails or says nothing', async (t) => {
  let mode: 'throw' | 'empty' | 'weird' = 'throw';
  const { srv } = await start(t, () => {
    if (mode === 'throw') throw new Error('secret detail');
    if (mode === 'empty') return { ready: false, reasons: [] };
    return { ready: 'yes' as unknown as boolean, reasons: [] };
  });
  let r = await get(srv.port, '/readyz');
  t.equal(r.status, 503);
  t.same(JSON.parse(r.body), { ready: false, reasons: ['readiness check failed'] });
  t.notMatch(r.body, /secret detail/);
  mode = 'empty';
  r = await get(srv.port, '/readyz');
  t.equal(r.status, 503);
  t.same(JSON.parse(r.body).reasons, ['not ready'], 'a reason is always given');
  mode = 'weird';
  r = await get(srv.port, '/readyz');
  t.equal(r.status, 503, 'only ready === true is ready');
});

t.test('readinessFrom names a check that throws', async (t) => {
  const r = readinessFrom({
    hsm: () => {
      throw new Error('x');
    },
    audit: () => {
      throw new Error('y');
    },
  })();
  t.same(r, { ready: false, reasons: ['hsm: state check failed', 'audit: health check failed'] });
  t.same(readinessFrom({ hsm: () => 'closed', audit: () => true })(), {
    ready: false,
    reasons: ['hsm: closed'],
  });
});

t.test('other paths are 404, other methods 405', async (t) => {
  const { srv } = await start(t);
  for (const p of ['/', '/metrics/', '/Metrics', '/readyz/extra', '/favicon.ico', '/../metrics']) {
    t.equal((await get(srv.port, p)).status, 404, `${p} is 404`);
  }
  for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    const r = await get(srv.port, '/metrics', m);
    t.equal(r.status, 405, `${m} is 405`);
    t.equal(r.headers.allow, 'GET, HEAD');
  }
  t.equal(
    (await get(srv.port, '/nowhere', 'POST')).status,
    404,
    'an unknown path is 404 whatever the method',
  );
});

t.test('malformed requests get 400 and the server keeps serving', async (t) => {
  const { srv } = await start(t);
  const garbage = await raw(srv.port, 'this is not http\r\n\r\n');
  t.match(garbage, /^HTTP\/1\.1 400 /);
  const hugeHeader = await raw(
    srv.port,
    `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
  );
  t.match(hugeHeader, /^HTTP\/1\.1 (400|431) /, 'an oversized header is refused');
  const badUrl = await raw(srv.port, 'GET metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(badUrl, /^HTTP\/1\.1 (400|404) /, 'a request target without a slash');
  const body = await raw(
    srv.port,
    'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
  );
  t.match(body, /^HTTP\/1\.1 200 /, 'a GET with a body is answered');
  t.equal((await get(srv.port, '/healthz')).status, 200, 'still serving');
});

t.test('a failing scrape is a 500, not a crash', async (t) => {
  const srv = await startMetricsServer({
    listen: '127.0.0.1:0',
    metrics: {
      text: () => Promise.reject(new Error('collector exploded')),
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
    },
    ready: () => ({ ready: true, reasons: [] }),
  });
  t.teardown(() => srv.close());
  const r = await get(srv.port, '/metrics');
  t.equal(r.status, 500);
  t.notMatch(r.body, /exploded/, 'the error is not echoed');
  t.equal((await get(srv.port, '/healthz')).status, 200);
});

t.test('a taken port is an error at start; close is idempotent and frees the port', async (t) => {
  const { srv } = await start(t);
  await t.rejects(
    startMetricsServer({
      listen: `127.0.0.1:${srv.port}`,
      metrics: new Metrics({ defaultMetrics: false }),
      ready: () => ({ ready: true, reasons: [] }),
    }),
    { code: 'EADDRINUSE' },
  );
  await srv.close();
  await srv.close();
  await t.rejects(get(srv.port, '/healthz'), { code: 'ECONNREFUSED' });
});
