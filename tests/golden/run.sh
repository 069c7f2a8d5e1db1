#!/bin/sh
# tests/golden/run.sh — golden tests: tests/golden/NAME.mdl beside NAME.err
# (expected stderr of `mlc check`, exit status 1) or NAME.ir (expected
# stdout of `mlc check --emit-ir`, exit status 0).
#   usage: tests/golden/run.sh PATH/TO/mlc [--update]
# Run from the repository root (file names in messages are relative to it).
mlc=${1:?usage: run.sh PATH/TO/mlc [--update]}
update=${2:-}
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for mdl in tests/golden/*.mdl; do
  base=${mdl%.mdl}
  name=$(basename "$base")
  if [ -f "$base.ir" ]; then
    "$mlc" check --emit-ir "$mdl" >"$tmp/out" 2>"$tmp/err"; rc=$?; want=0; golden=$base.ir
  elif [ -f "$base.err" ] || [ "$update" = --update ]; then
    "$mlc" check "$mdl" >"$tmp/junk" 2>"$tmp/out"; rc=$?; want=1; golden=$base.err
  else
    echo "FAIL $name: no $name.err or $name.ir beside it"; fail=$((fail + 1)); continue
  fi
  if [ "$update" = --update ]; then cp "$tmp/out" "$golden"; fi
  if [ $rc -ne $want ]; then
    echo "FAIL $name: exit status $rc, expected $want"; cat "$tmp/err" 2>/dev/null; fail=$((fail + 1))
  elif ! diff -u "$golden" "$tmp/out" >"$tmp/diff"; then
    echo "FAIL $name: output differs from $(basename "$golden")"; cat "$tmp/diff"; fail=$((fail + 1))
  else
    echo "PASS $name"; pass=$((pass + 1))
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
