"""Key material wrapped for a hyokd import key, written from the README ("BYOK") and
admin.proto's ImportWrapAlgorithm: what a key owner's own tooling does, in Python.

Run by test/keys/byok-interop.test.ts with Debian's python3-cryptography. Reads one JSON
object from stdin (hex; the material never in argv):
    {"spki": ..., "material": ..., "header": true | false}
and prints {"blob": hex}: CKM_RSA_AES_KEY_WRAP with OAEP SHA-1 (RSA-OAEP of a fresh
AES-256 key, then AES key wrap with padding of the material), with or without hyokd's
17-byte header.
"""

import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from cryptography.hazmat.primitives.serialization import load_der_public_key


def main():
    req = json.load(sys.stdin)
    spki = bytes.fromhex(req["spki"])
    material = bytes.fromhex(req["material"])
    ephemeral = os.urandom(32)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    payload = load_der_public_key(spki).encrypt(ephemeral, oaep) + aes_key_wrap_with_padding(ephemeral, material)
    if req["header"]:
        # "HYOKIMP", format 1, OAEP hash 1 = SHA-1, first 8 bytes of SHA-256 over the SPKI.
        payload = b"HYOKIMP" + bytes([1, 1]) + hashlib.sha256(spki).digest()[:8] + payload
    print(json.dumps({"blob": payload.hex()}))


if __name__ == "__main__":
    main()
