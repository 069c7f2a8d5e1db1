#!/bin/sh
# .ci/deps.sh — installs what mlc needs to build and test, from Debian.
# Skips apt entirely when everything is already installed.
set -e
PKGS="build-essential cmake flex bison libcmocka-dev zlib1g-dev python3-torch python3-numpy dataset-fashion-mnist"
# the short fuzzing pass of .ci/test.sh (CI only): clang and its libFuzzer runtime
if [ "$CI" = true ]; then PKGS="$PKGS clang libclang-rt-14-dev"; fi
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
fi
