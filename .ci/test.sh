#!/bin/sh
# .ci/test.sh — the whole test suite: a normal build and an ASan+UBSan build,
# each running every test (cmocka unit tests, golden diagnostics, end-to-end
# comparisons with PyTorch, the example classifiers, the kill test), and in
# CI (CI=true, as .ci/run sets) a short fuzzing pass: each libFuzzer harness of
# tests/fuzz for FUZZ_SECONDS (default 45) seconds.
set -e
cd "$(dirname "$0")/.."
sh .ci/deps.sh
J=${JOBS:-2}

echo "== build (RelWithDebInfo) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$J"
ctest --test-dir build --output-on-failure -j"$J"

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMLC_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$J"
# code that `mlc run` builds links the sanitized runtime: build it sanitized too.
# allocator_may_return_null: an allocation too large for the machine returns
# NULL, as without ASan, so that the error path is what gets tested
# (errors/weights_exceed_memory).  e2e_classify is left to the first pass: most of its time is PyTorch training
# the reference weights, which the sanitizers do not look at.
MLC_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -g" \
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$J" -E e2e_classify

if [ "$CI" = true ]; then
  echo "== fuzzing: each harness for ${FUZZ_SECONDS:-45} s (tests/fuzz/run.sh) =="
  FUZZ_JOBS="$J" sh tests/fuzz/run.sh "${FUZZ_SECONDS:-45}"
fi
