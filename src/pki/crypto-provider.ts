// @peculiar/x509 does its signing through a WebCrypto provider. We hand it Node's own
// implementation explicitly, once, instead of relying on whatever global it finds.
import './reflect-metadata-shim.js';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's webcrypto type and the DOM Crypto type describe the same object.
export const nodeCrypto = webcrypto as unknown as Crypto;

x509.cryptoProvider.set(nodeCrypto);

export { x509 };

/** ECDSA over P-256 with SHA-256: the only key type the dev PKI issues. */
export const EC_P256: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
export const ECDSA_SHA256: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
