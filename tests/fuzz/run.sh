#!/bin/sh
# tests/fuzz/run.sh [SECONDS] — builds the libFuzzer harnesses with clang
# (ASan + UBSan) in build-fuzz/ and runs each for SECONDS (default 60), one
# after another, starting from the seed corpus and the regression inputs.
# Fails on any finding (crash, sanitizer report, timeout, out-of-memory);
# the input that triggered it is left in build-fuzz/findings/NAME/.
#
#   FUZZ_HARNESSES="mdl npy"   run only these
#   FUZZ_BUILD=DIR             another build directory
#   FUZZ_JOBS=N                build parallelism (default 2)
#
# New inputs the fuzzers find go to build-fuzz/corpus/NAME (not the checked-in
# seeds), so repeated runs go on where the last stopped.  Prints one line per
# harness: executions, seconds, status.
set -e
cd "$(dirname "$0")/../.."
SECS=${1:-60}
B=${FUZZ_BUILD:-build-fuzz}
NAMES=${FUZZ_HARNESSES:-"mdl safetensors npy idx checkpoint diff"}
CC_FUZZ=${CC_FUZZ:-clang}

cmake -S . -B "$B" -DCMAKE_C_COMPILER="$CC_FUZZ" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLC_FUZZ=ON \
  -DMLC_TESTS=ON >/dev/null
targets=""
for n in $NAMES; do targets="$targets fuzz_$n"; done
cmake --build "$B" -j"${FUZZ_JOBS:-2}" --target $targets >/dev/null

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for n in $NAMES; do
  mkdir -p "$B/corpus/$n" "$B/findings/$n"
  log="$B/fuzz_$n.log"
  set +e
  "$B/tests/fuzz/fuzz_$n" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$B/findings/$n/" "$B/corpus/$n" tests/fuzz/corpus/$n tests/fuzz/regress/$n >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^stat::.*//; s/.*Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz_$n: ok, ${execs:-?} executions in ${secs:-$SECS} s"
  else
    echo "fuzz_$n: FINDING (exit $rc), ${execs:-?} executions; log $log, input in $B/findings/$n/"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -8 | sed 's/^/    /'
    status=1
  fi
done
exit $status
