"""The recipient side of hyokd's rewrap, written from hyok.proto's RewrapAlgorithm comments.

Run by test/server/rewrap-interop.test.ts with Debian's python3-cryptography. Reads one
JSON object from stdin (the private key as PEM, the rest hex; never argv):
    {"algorithm": "RSA_OAEP_SHA256" | "ECDH_P256_HKDF_SHA256_AES_KWP",
     "privateKeyPem": ..., "wrappedDek": ..., "ephemeralPublicKey": ...}
and prints {"dek": hex}.
"""

import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_private_key

HKDF_INFO = b"hyokd rewrap v1 ECDH-P256 HKDF-SHA256 A256KWP"


def main():
    req = json.load(sys.stdin)
    key = load_pem_private_key(req["privateKeyPem"].encode(), password=None)
    wrapped = bytes.fromhex(req["wrappedDek"])
    if req["algorithm"] == "RSA_OAEP_SHA256":
        dek = key.decrypt(
            wrapped,
            padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
    else:
        eph = load_der_public_key(bytes.fromhex(req["ephemeralPublicKey"]))
        z = key.exchange(ec.ECDH(), eph)  # the shared point's x-coordinate
        kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(z)
        dek = aes_key_unwrap_with_padding(kek, wrapped)
    print(json.dumps({"dek": dek.hex()}))


if __name__ == "__main__":
    main()
