#!/usr/bin/env bash
# bench/route.sh - what libhsmsh-route.so costs an application: C_Sign (ECDSA P-256, 32 bytes)
# and C_Encrypt (AES-CBC, 64 bytes) per second straight to SoftHSM2 and through the module
# (weights 100/0, so every operation runs on blue), with 1 and 2 threads, each thread with
# its own session and key handle; and a whole-token C_FindObjects on one side against the
# module's union of two sides holding N objects each. Rounds are interleaved (direct, route,
# route without the SoftHSM2 guard, in a rotating order) and the medians of the paired ratios
# compared.
#   bench/route.sh [HSMSH]    env: BENCH_SECONDS (1), BENCH_REPEAT (9), BENCH_FIND_N (16666)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
HSMSH=$(realpath "${1:-$here/../build/hsmsh}")
ROUTE=$(dirname "$HSMSH")/libhsmsh-route.so
MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SECS=${BENCH_SECONDS:-1} REPEAT=${BENCH_REPEAT:-9} FIND_N=${BENCH_FIND_N:-16666}
[ -f "$ROUTE" ] || { echo "bench/route.sh: no $ROUTE (build first)" >&2; exit 1; }
work=$(mktemp -d "${BENCH_DIR:-/tmp}/hsmsh-route-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf HSMSH_ROUTE_STATE=$work/state
cc -O2 -std=c11 -Wall $(pkg-config --cflags p11-kit-1) "$here/route_bench.c" -ldl -lpthread -o "$work/route_bench"
for t in blue green; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
printf 1234 > "$work/pin"
BLUE="pkcs11:token=blue?pin-source=file:$work/pin" GREEN="pkcs11:token=green?pin-source=file:$work/pin"
U=$BLUE "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
  assert(s:generate{type = "EC", curve = "P-256", label = "bench-ec", id = "\1", CKA_EXTRACTABLE = true})
  assert(s:generate{type = "AES", bits = 256, label = "bench-aes", id = "\2", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})'
"$HSMSH" run generic/migrate from="$BLUE" to="$GREEN" > /dev/null 2>&1
"$HSMSH" route init "$HSMSH_ROUTE_STATE" blue="pkcs11:token=blue?module-path=$MODULE" \
  green="pkcs11:token=green?module-path=$MODULE" > /dev/null

rate() { "$work/route_bench" "$@" | awk '{ print $6 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# One round runs the three variants back to back, in an order that rotates from round to round,
# and yields two ratios; the medians of those paired ratios are less shaken by a machine whose
# speed drifts (a shared VM) than a ratio of medians.
echo "== ops/s, $REPEAT rounds of $SECS s per variant (SoftHSM2 $(softhsm2-util --version), $(nproc) cores)"
printf '%-10s %7s %12s %12s %8s %16s %8s %12s\n' op threads direct route ratio "route, no guard" ratio "added µs/op"
for op in sign encrypt; do
  for th in 1 2; do
    d=() r=() u=() rr=() ru=()
    for ((i = 0; i < REPEAT; i++)); do
      for v in $(printf 'd r u\nr u d\nu d r\n' | sed -n "$((i % 3 + 1))p"); do
        case $v in
          d) D=$(BENCH_TOKEN=blue rate "$MODULE" 1234 $op $th "$SECS") ;;
          r) R=$(rate "$ROUTE" 1234 $op $th "$SECS") ;;
          u) G=$(HSMSH_SOFTHSM2_GUARD=0 rate "$ROUTE" 1234 $op $th "$SECS") ;;
        esac
      done
      d+=("$D") r+=("$R") u+=("$G")
      rr+=("$(awk -v a="$R" -v b="$D" 'BEGIN { print a / b }')")
      ru+=("$(awk -v a="$G" -v b="$D" 'BEGIN { print a / b }')")
    done
    D=$(median "${d[@]}") R=$(median "${r[@]}") G=$(median "${u[@]}")
    awk -v op=$op -v th=$th -v d="$D" -v r="$R" -v g="$G" -v rr="$(median "${rr[@]}")" \
      -v ru="$(median "${ru[@]}")" 'BEGIN {
      printf "%-10s %7d %12.0f %12.0f %8.3f %16.0f %8.3f %12.2f\n", op, th, d, r, rr, g, ru,
        (1e6 * th / r) - (1e6 * th / d) }'
  done
done
echo "(an op is an Init and its final call; rates are medians, ratios the medians of each round's"
echo " route/direct; 'no guard': HSMSH_SOFTHSM2_GUARD=0, the lock that orders hsmsh processes'"
echo " SoftHSM2 calls, see docs/modules.md; goal: route >= 0.97x direct with 1 thread, >= 0.95x with 2)"

echo "== a whole-token find: $FIND_N data objects on each side (the same objects: twins)"
for side in BLUE GREEN; do
  U=${!side} N=$FIND_N "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
    for i = 1, tonumber(os.getenv("N")) do
      assert(s:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = ("obj-%05d"):format(i), CKA_VALUE = "v"})
    end'
done
fd=() fc=() fw=()
for ((i = 0; i < REPEAT; i++)); do
  fd+=("$(BENCH_TOKEN=blue "$work/route_bench" "$MODULE" 1234 find 2 | awk '{ print $10 }')")
  out=$("$work/route_bench" "$ROUTE" 1234 find 2)
  fc+=("$(awk '{ print $8 }' <<< "$out")") fw+=("$(awk '{ print $10 }' <<< "$out")")
done
n_route=$(awk '{ print $2 }' <<< "$out")
FD=$(median "${fd[@]}") FC=$(median "${fc[@]}") FW=$(median "${fw[@]}")
awk -v d="$FD" -v c="$FC" -v w="$FW" -v n="$n_route" 'BEGIN {
  printf "one side (direct): %.3f s; the union through the module (%d objects, each once): %.3f s\n", d, n, w
  printf "  once the module knows the objects: %.2fx one side (goal: < 2x)\n", w / d
  printf "  the first find in a process (it reads every object'"'"'s class, ID, label and fingerprint): %.3f s, %.2fx\n", c, c / d }'
