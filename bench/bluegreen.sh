#!/usr/bin/env bash
# bench/bluegreen.sh - how long each generic/blue-green step takes on SoftHSM2 for a blue
# holding N AES-256 keys (no application running: the steps' own cost). Prints one line per
# step and size, and the per-key cost of prepare against a plain generic/migrate of the same
# keys measured in the same run (the reference).
#   bench/bluegreen.sh [HSMSH]    env: BENCH_KEYS ("1000 16666")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
HSMSH=$(realpath "${1:-$here/../build/hsmsh}")
SIZES=${BENCH_KEYS:-1000 16666}
work=$(mktemp -d "${BENCH_DIR:-/tmp}/hsmsh-bluegreen-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 1234 > pin
secs() { local t0; t0=$(date +%s.%N); "$@" > /dev/null 2> last.err || { cat last.err >&2; exit 1; }
         awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
echo "== generic/blue-green steps on SoftHSM2 $(softhsm2-util --version) ($(nproc) cores), seconds"
printf '%-14s' step; for n in $SIZES; do printf '%12s' "$n keys"; done; echo
declare -A T
for n in $SIZES; do
  rm -rf tokens; mkdir tokens
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > softhsm2.conf
  export SOFTHSM2_CONF=$work/softhsm2.conf
  for t in blue green ref; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
  U="pkcs11:token=blue?pin-source=file:$work/pin" N=$n "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
    for i = 1, tonumber(os.getenv("N")) do
      assert(s:generate{type = "AES", bits = 256, label = ("k%05d"):format(i), id = string.pack(">I4", i),
                        CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
    end'
  B="pkcs11:token=blue?pin-source=file:$work/pin" G="pkcs11:token=green?pin-source=file:$work/pin"
  S=$work/state.$n
  st() { "$HSMSH" run generic/blue-green state="$S" pin_source="file:$work/pin" "$@"; }
  T[reference,$n]=$(secs "$HSMSH" run generic/migrate from="$B" to="pkcs11:token=ref?pin-source=file:$work/pin" transport=rsa-aes)
  T[prepare,$n]=$(secs st step=prepare blue="$B" green="$G")
  T[parity,$n]=$(secs st step=parity)
  T[sync,$n]=$(secs st step=sync)
  T[write-switch,$n]=$(secs st step=write-switch)
  T[cutover,$n]=$(secs st step=cutover)
  T[rollback,$n]=$(secs st step=rollback blue_capacity=100000)
  T[decommission,$n]=$(secs st step=decommission)
  T[status,$n]=$(secs st step=status)
done
for s in prepare parity sync write-switch cutover rollback decommission status reference; do
  printf '%-14s' "$s"; for n in $SIZES; do printf '%12s' "${T[$s,$n]}"; done; echo
done
echo "(prepare = a backup of blue, kept, restored onto green; sync, write-switch, cutover and"
echo " rollback each enumerate both sides and diff them; reference = generic/migrate of the same"
echo " keys into a third token by RSA-AES)"
for n in $SIZES; do
  awk -v p="${T[prepare,$n]}" -v r="${T[reference,$n]}" -v n=$n 'BEGIN {
    printf "%d keys: prepare %.2f ms/key, plain migrate %.2f ms/key, ratio %.2f\n", n, 1000 * p / n, 1000 * r / n, p / r }'
done
