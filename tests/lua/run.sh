#!/usr/bin/env bash
# Runs the busted specs with the hsmsh binary ($1) against a fresh SoftHSM2 token
# directory made for this run (tokens are created by the specs through hsmsh itself).
set -euo pipefail
hsmsh=$(realpath "$1"); shift || true
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" XDG_DATA_HOME="$work/data" XDG_STATE_HOME="$work/state"
export HSMSH="$hsmsh" HSMSH_TEST_WORK="$work"
cd "$here"
"$hsmsh" busted.lua --output=TAP spec "$@"   # not exec: the EXIT trap removes $work
