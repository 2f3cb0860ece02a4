#!/bin/sh
# Runs the native engine's tests (and the audit write thread's) once with the addon
# built under AddressSanitizer and UndefinedBehaviorSanitizer.
# Usage: sh scripts/asan-test.sh [test files...]
# The sanitizer build goes to build/Debug (the normal build in build/Release is kept).
set -eu
cd "$(dirname "$0")/.."
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
CXXFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
LDFLAGS="-fsanitize=address,undefined" \
  npx node-gyp configure build --debug >/dev/null
# Node itself is not instrumented and leaks by design at exit: leak checking is off;
# heap overflows, use-after-free, double free and UB in the addon abort the test.
export HYOKD_NATIVE_BUILD=Debug
export LD_PRELOAD="$asan $ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
if [ $# -eq 0 ]; then set -- test/hsm/native-ops.test.ts test/hsm/native-concurrency.test.ts test/hsm/native-args.test.ts test/hsm/native-backend.test.ts test/audit/write-offload.test.ts test/hsm/native-thread-names.test.ts test/hsm/session-copy-revocation.test.ts; fi
rc=0
npx tap --jobs=1 "$@" || rc=$?
# Leave the tree configured for the normal Release build again.
unset LD_PRELOAD
npx node-gyp configure >/dev/null 2>&1
exit $rc
