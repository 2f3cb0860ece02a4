import { X509Certificate, createPrivateKey } from 'node:crypto';
import t from 'tap';
import { DEV_CLIENT_ID, createCa, formatBundle, issueClientCert, parseBundle } from '../../src/pki/index.js';

t.test('a bundle round-trips key, client certificate and CA', async (t) => {
  const ca = await createCa();
  const c = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const text = formatBundle({ keyPem: c.keyPem, certPem: c.certPem, caPem: ca.certPem });
  const b = parseBundle(text);
  t.equal(b.keyPem, c.keyPem);
  t.equal(b.certPem, c.certPem);
  t.equal(b.caPem, ca.certPem);
  t.ok(new X509Certificate(b.certPem).checkPrivateKey(createPrivateKey(b.keyPem)));
});

t.test('an incomplete bundle is refused, naming the missing part', async (t) => {
  const ca = await createCa();
  const c = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  t.throws(() => parseBundle(c.certPem + ca.certPem), /exactly one "PRIVATE KEY" block, found 0/);
  t.throws(() => parseBundle(c.keyPem + c.certPem), /found 1 certificate/);
  t.throws(() => parseBundle(c.keyPem + c.keyPem + c.certPem + ca.certPem), /found 2$/);
});

t.test('errors never echo the private key', async (t) => {
  const ca = await createCa();
  const c = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const body = c.keyPem.split('\n')[1]!;
  try {
    parseBundle(c.keyPem);
    t.fail('should throw');
  } catch (e) {
    t.notMatch((e as Error).message, body.slice(0, 16));
  }
});
