#!/bin/sh
# Idempotent bootstrap for a checkout: `npm start` and `npm test` run this first.
#
# Steps, each skipped when its outputs are already newer than its inputs:
#   system   SoftHSM2, OpenSC (pkcs11-tool), the p11-kit PKCS#11 header, the
#            nghttp2 and OpenSSL headers of the benchmarks' C load generator, and
#            Python's grpcio, protobuf and cryptography for the interoperability tests
#   deps     npm ci when node_modules is missing or older than package-lock.json
#   native   node-gyp rebuild when the addon is older than native/, binding.gyp
#            or scripts/gen-ckr-table.mjs
#   ts       tsc when dist/ is older than any .ts under src/ test/ bench/ or tsconfig.json
#
# Quiet when nothing changed; one progress line per step that runs (stderr);
# on failure the step name is printed and the script exits non-zero.
# POSIX sh: no bashisms (`test -nt` is supported by dash, bash and busybox).

set -eu

cd "$(dirname "$0")/.."

say() {
  printf 'ensure: %s\n' "$*" >&2
}

fail() {
  printf 'ensure: FAILED at step "%s": %s\n' "$1" "$2" >&2
  exit 1
}

# Prints the first existing path among the arguments that is newer than $1,
# or nothing. Missing inputs are ignored (a file may not be written yet).
first_newer() {
  ref=$1
  shift
  for p in "$@"; do
    [ -e "$p" ] || continue
    hit=$(find "$p" -type f -newer "$ref" 2>/dev/null | head -n 1)
    if [ -n "$hit" ]; then
      printf '%s\n' "$hit"
      return 0
    fi
  done
  return 0
}

# --- system packages ---------------------------------------------------------
SOFTHSM_LIB=/usr/lib/softhsm/libsofthsm2.so
PKCS11_HEADER=/usr/include/p11-kit-1/p11-kit/pkcs11.h
# The benchmarks' load generator (bench/loadgen/grpc_gen.c, also built by its test) is C on
# libnghttp2 and OpenSSL.
NGHTTP2_HEADER=/usr/include/nghttp2/nghttp2.h
OPENSSL_HEADER=/usr/include/openssl/ssl.h

missing=""
[ -e "$SOFTHSM_LIB" ] || missing="$missing $SOFTHSM_LIB"
command -v softhsm2-util >/dev/null 2>&1 || missing="$missing softhsm2-util"
command -v pkcs11-tool >/dev/null 2>&1 || missing="$missing pkcs11-tool"
[ -e "$PKCS11_HEADER" ] || missing="$missing $PKCS11_HEADER"
[ -e "$NGHTTP2_HEADER" ] || missing="$missing $NGHTTP2_HEADER"
[ -e "$OPENSSL_HEADER" ] || missing="$missing $OPENSSL_HEADER"
# The interoperability tests (test/interop/: a client on another gRPC implementation, the
# envelope, rewrap, BYOK and audit formats implemented again from the README) run on
# Debian's interpreter, where these install.
/usr/bin/python3 -c 'import grpc, google.protobuf, cryptography' >/dev/null 2>&1 ||
  missing="$missing python3-grpcio/python3-protobuf/python3-cryptography"

packages="softhsm2 libp11-kit-dev opensc libnghttp2-dev libssl-dev python3-grpcio python3-protobuf python3-cryptography"
# The native addon also needs a C++ toolchain and Python for node-gyp.
if ! command -v make >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
  missing="$missing make/g++"
  packages="$packages build-essential"
fi
if ! command -v python3 >/dev/null 2>&1; then
  missing="$missing python3"
  packages="$packages python3"
fi

if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "system: installing $packages (missing:$missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2 || fail system "apt-get update failed"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y $packages >&2 || fail system "apt-get install failed"
  else
    printf 'ensure: FAILED at step "system": missing prerequisites:%s\n' "$missing" >&2
    printf 'ensure: install them with:\n' >&2
    printf '  sudo sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y %s"\n' \
      "$packages" >&2
    exit 1
  fi
fi

# --- npm dependencies --------------------------------------------------------
# npm writes node_modules/.package-lock.json on every install, so it is the
# freshness marker for the whole tree.
deps_marker=node_modules/.package-lock.json
if [ ! -e "$deps_marker" ] || [ package-lock.json -nt "$deps_marker" ]; then
  say "deps: npm ci"
  npm ci --no-audit --no-fund >&2 || fail deps "npm ci failed"
  touch "$deps_marker"
fi

# --- native addon ------------------------------------------------------------
addon=build/Release/hyokd_native.node
if [ ! -e "$addon" ]; then
  reason="no $addon"
else
  reason=$(first_newer "$addon" native binding.gyp scripts/gen-ckr-table.mjs)
  [ -z "$reason" ] || reason="$reason changed"
fi
if [ -n "$reason" ]; then
  say "native: node-gyp rebuild ($reason)"
  npx --no-install node-gyp rebuild --loglevel=warn >&2 || fail native "node-gyp rebuild failed"
  [ -e "$addon" ] || fail native "build finished but $addon is missing"
fi

# --- TypeScript --------------------------------------------------------------
# tsc only rewrites files, so the dist/ directory's own mtime says nothing:
# a stamp written after a successful compile marks the build instead.
ts_stamp=dist/.ensure-stamp
# The stamp holds the number of .ts files, so a deleted source also triggers a build.
ts_count=$(find src test bench -type f -name '*.ts' 2>/dev/null | wc -l | tr -d ' ')
if [ ! -e "$ts_stamp" ]; then
  reason="no successful build recorded in dist/"
elif [ "$(cat "$ts_stamp")" != "$ts_count" ]; then
  reason="set of .ts files changed"
else
  reason=""
  [ ! tsconfig.json -nt "$ts_stamp" ] || reason=tsconfig.json
  if [ -z "$reason" ]; then
    for d in src test bench; do
      [ -d "$d" ] || continue
      reason=$(find "$d" -type f -name '*.ts' -newer "$ts_stamp" | head -n 1)
      [ -z "$reason" ] || break
    done
  fi
  [ -z "$reason" ] || reason="$reason changed"
fi
if [ -n "$reason" ]; then
  say "ts: tsc -p tsconfig.json ($reason)"
  # tsc emits even when it reports errors, so dist/ is unknown until it succeeds.
  # The new stamp takes the start time: a file edited while tsc runs is rebuilt next time.
  mkdir -p dist
  rm -f "$ts_stamp"
  printf '%s\n' "$ts_count" >"$ts_stamp.new"
  npx --no-install tsc -p tsconfig.json >&2 || fail ts "tsc reported errors"
  mv "$ts_stamp.new" "$ts_stamp"
fi
