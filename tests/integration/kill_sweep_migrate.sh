#!/usr/bin/env bash
# kill_sweep_migrate: DESIGN invariants 1, 2 and 5 for generic/migrate after kill -9 and
# `hsmsh resume JOURNAL` (a kill before the journal's first line: the documented re-run),
# driven through tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB) on SoftHSM2 tokens in /dev/shm.
# Source: kill_sweep.bash's small fixture (AES, HMAC, EC pair and certificate, data object,
# a non-extractable key), migrated src -> dst, both tokens through the fault module.
#  1. what is swept in CI: a run makes about 443 PKCS#11 calls (one RSA-3072 transport pair
#     costs 0.6 s of each run and each resume), too many to kill at each index within the CI
#     budget; so kill -9 before and after every call index from each journaled intent
#     ("step":"create") to its "done" (every index where an object is in flight: about 75 of
#     the 443), the first and last 3 calls, and every 24th index elsewhere (setup, the
#     transport, the plan, the end); each run resumed;
#  2. kills during the resume itself: the run killed just after the call that made the first
#     secret key's destination object (in flight: the journal has its intent, not its done),
#     that state saved; then the resume (about 485 calls) killed before and after the same
#     selection of its own call indices (its windows: where it settles the key the killed run
#     had in flight, and each intent to its done; its first and last 3 calls; every 24th
#     index, which is all of its plan's search for leftovers that CI covers), resumed again;
#  3. after every resume, the oracle (kill_sweep.bash, reading SoftHSM2 directly): the
#     destination holds each carried source object exactly once, nothing else (no transport
#     key, lease or half-made object), every attribute equal to the source's but the
#     documented forced ones (hard-coded in the oracle), each key proven by value (KCV and
#     encrypt/decrypt, HMAC, a signature verified with the source's public key), each key
#     event's `differs` naming exactly what differs, and the source unchanged attribute for
#     attribute.
# The full sweep (every index before and after, in the run and in the resume) is
# bench/kill_sweep.sh (KILL_SWEEP_FULL=1), which prints its figures.
# Usage: bash kill_sweep_migrate.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
NAME=kill_sweep_migrate
KS_WINDOWED=1
KS_RESUME_SWEEP=1
KS_STRIDE=24
# shellcheck source=kill_sweep.bash
source "$(dirname "${BASH_SOURCE[0]}")/kill_sweep.bash" "$@"

ks_fixture() {
  mk_token src && mk_token dst || { fail "softhsm2-util --init-token"; return 1; }
  ks_source "$(u src)" || return 1
  ks_dump "$(u src)" > "$work/src.canon" && ks_dump "$(u dst)" > "$work/dst0.canon" || { fail "ks_dump"; return 1; }
  check "the source has 7 objects ($(cut -f1 "$work/src.canon" | tr '\n' ' '))" [ "$(wc -l < "$work/src.canon")" -eq 7 ]
}
ks_run() {
  { HSMSH_FAULT=$1 "$HSMSH" run generic/migrate from="$(u src fault)" to="$(u dst fault)" --json --journal "$2" \
      > "$L/out" 2> "$L/err" < /dev/null; } 2> /dev/null
  rc=$?
}
ks_check() { ks_oracle "$1" "$(u src)" "$(u dst)"; }
ks_main
