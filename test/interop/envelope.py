"""The hyokd envelope, implemented from the README's byte layout alone ("The envelope").

Run by test/server/envelope-interop.test.ts with Debian's python3-cryptography. Reads one
JSON object from stdin (hex strings; the key material and DEKs travel on stdin, never in
argv) and prints one JSON object:
    {"open": {"kek": ..., "envelope": ..., "aad": ...}}
        -> the parsed fields and the DEK, or {"error": "..."} when it does not open
    {"seal": {"kek": ..., "key": ..., "version": ..., "dek": ..., "aad": ..., "iv": ...}}
        -> {"envelope": ...}
"""

import json
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"HYKD"
FORMAT_VERSION = 1
ALG_AES256_GCM = 1


def parse(env):
    if env[:4] != MAGIC:
        raise ValueError("bad magic")
    version, alg, n = env[4], env[5], env[6]
    if version != FORMAT_VERSION or alg != ALG_AES256_GCM or not 1 <= n <= 128:
        raise ValueError("unsupported header")
    name = env[7 : 7 + n].decode("utf-8")
    (key_version,) = struct.unpack(">I", env[7 + n : 11 + n])
    iv = env[11 + n : 23 + n]
    tag = env[23 + n : 39 + n]
    (length,) = struct.unpack(">H", env[39 + n : 41 + n])
    ct = env[41 + n :]
    if len(ct) != length:
        raise ValueError("ciphertext length %d, header says %d" % (len(ct), length))
    return {"header": env[: 11 + n], "name": name, "version": key_version, "iv": iv, "tag": tag, "ct": ct}


def gcm_aad(header, caller_aad):
    return struct.pack(">I", len(header)) + header + caller_aad


def open_envelope(kek, env, aad):
    p = parse(env)
    try:
        dek = AESGCM(kek).decrypt(p["iv"], p["ct"] + p["tag"], gcm_aad(p["header"], aad))
    except InvalidTag:
        return {"error": "INVALID_TAG", "keyName": p["name"], "keyVersion": p["version"]}
    return {
        "keyName": p["name"],
        "keyVersion": p["version"],
        "ivBytes": len(p["iv"]),
        "tagBytes": len(p["tag"]),
        "dek": dek.hex(),
    }


def seal(kek, name, version, dek, aad, iv):
    raw = name.encode("utf-8")
    header = MAGIC + bytes([FORMAT_VERSION, ALG_AES256_GCM, len(raw)]) + raw + struct.pack(">I", version)
    sealed = AESGCM(kek).encrypt(iv, dek, gcm_aad(header, aad))
    ct, tag = sealed[:-16], sealed[-16:]
    return header + iv + tag + struct.pack(">H", len(ct)) + ct


def main():
    req = json.load(sys.stdin)
    h = bytes.fromhex
    if "open" in req:
        o = req["open"]
        out = open_envelope(h(o["kek"]), h(o["envelope"]), h(o["aad"]))
    else:
        s = req["seal"]
        out = {"envelope": seal(h(s["kek"]), s["key"], s["version"], h(s["dek"]), h(s["aad"]), h(s["iv"])).hex()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
