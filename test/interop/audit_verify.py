"""An audit chain verifier written from the README alone ("Verifying without hyokd").

Run by test/audit/interop-verify.test.ts with Debian's python3-cryptography:
    python3 audit_verify.py DIR
Prints one JSON object: {"ok": true, "records": N, "checkpoints": N, "keys": [...]} or
{"ok": false, "file": ..., "line": ..., "problem": ...} at the first problem.
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

GENESIS = "0" * 64


def canonical(value):
    # Keys sorted (by UTF-16 code unit; for the BMP that is code point order), no
    # whitespace, non-ASCII left as is: what JSON.stringify writes for these values.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def lines_of(path):
    data = open(path, "rb").read()
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    # Complete lines only: bytes after the last newline are a partial write.
    return data.split(b"\n")[:-1]


def main():
    root = sys.argv[1]
    files = sorted(n for n in os.listdir(root) if n.startswith("audit-") and n.endswith(".jsonl"))
    keys = {}
    prev_hash, prev_seq = GENESIS, None
    records = checkpoints = 0

    def fail(name, lineno, problem):
        print(json.dumps({"ok": False, "file": name, "line": lineno, "problem": problem}))
        sys.exit(0)

    for name in files:
        for lineno, raw in enumerate(lines_of(os.path.join(root, name)), 1):
            rec = json.loads(raw.decode("utf-8"))
            claimed = rec.pop("hash")
            if hashlib.sha256(canonical(rec).encode("utf-8")).hexdigest() != claimed:
                fail(name, lineno, "hash")
            if rec["prev"] != prev_hash:
                fail(name, lineno, "prev")
            if prev_seq is not None and rec["seq"] != prev_seq + 1:
                fail(name, lineno, "seq")
            if rec["type"] == "key":
                spki = base64.b64decode(rec["spki"])
                if hashlib.sha256(spki).hexdigest()[:16] != rec["keyId"]:
                    fail(name, lineno, "keyId")
                if rec["alg"] != "ECDSA_P256_SHA256_P1363":
                    fail(name, lineno, "alg")
                keys[rec["keyId"]] = load_der_public_key(spki)
            elif rec["type"] == "checkpoint":
                head = rec["head"]
                if head["seq"] != prev_seq or head["hash"] != prev_hash:
                    fail(name, lineno, "checkpoint-head")
                key = keys.get(rec["keyId"])
                if key is None:
                    fail(name, lineno, "unknown-key")
                sig = base64.b64decode(rec["sig"])
                if len(sig) != 64:
                    fail(name, lineno, "signature-length")
                der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
                text = "hyokd-audit-checkpoint-v1\n%s\n%d\n%s" % (rec["keyId"], head["seq"], head["hash"])
                try:
                    key.verify(der, text.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
                except InvalidSignature:
                    fail(name, lineno, "signature")
                checkpoints += 1
            prev_hash, prev_seq = claimed, rec["seq"]
            records += 1
    print(json.dumps({"ok": True, "records": records, "checkpoints": checkpoints, "keys": sorted(keys)}))


if __name__ == "__main__":
    main()
