#!/usr/bin/env bash
# kill_sweep_image: DESIGN invariants 1, 2 and 5 for a token-image import
# (protectserver/token-replication side=destination) after kill -9 and
# `hsmsh resume JOURNAL --yes` (a kill before the journal's first line: the documented
# re-run), through tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB) on SoftHSM2 tokens in
# /dev/shm. Once, directly: kill_sweep.bash's small source (AES, HMAC, EC pair and
# certificate, data object, a non-extractable key), identities for src and dst signed by a CA
# token (protectserver/establish-ca), trust both ways, and the image of src made for dst
# (side=source). Then the import into dst is killed before and after EVERY PKCS#11 call index
# of a run (all of them, in CI), each run resumed, and after every resume the oracle of
# kill_sweep.bash (SoftHSM2 directly): dst's own objects (its identity, trust) unchanged, each
# carried object exactly once (the source's identity objects, hsmsh-*, are not carried), one
# image record (hsmsh-image:<serial>) and nothing else (no transport key, lease or half-made
# object), every attribute equal to the source's but the documented forced ones, each key
# proven by value, each key event's `differs` exact, the source unchanged.
# Usage: bash kill_sweep_image.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
NAME=kill_sweep_image
# shellcheck source=kill_sweep.bash
source "$(dirname "${BASH_SOURCE[0]}")/kill_sweep.bash" "$@"
KS_RESUME=(--yes)
export KS_SRC_SKIP='^hsmsh%-' KS_EXTRA='^hsmsh%-image:'
SO="so_pin=file:$work/so"

ks_fixture() {
  mk_token ca && mk_token src && mk_token dst || { fail "softhsm2-util --init-token"; return 1; }
  ks_source "$(u src)" || return 1
  local sdst step
  sdst=$("$HSMSH" -e "local _, i = hsm.token('$(u dst)', {login = false}) print(i.serial)")
  for step in "protectserver/establish-ca ca=$(u ca) hsms=$(u src),$(u dst) certs=$I/files/certs" \
              "protectserver/trust trusted=$(u src) trusting=$(u dst) $SO" \
              "protectserver/trust trusted=$(u dst) trusting=$(u src) $SO" \
              "protectserver/token-replication side=source from=$(u src) dest-cert=$I/files/certs/HSM_$sdst.crt $SO image=$I/files/x.img"; do
    # (no blanks in these paths and URIs: the words split as meant)
    # shellcheck disable=SC2086
    "$HSMSH" run $step > "$work/step.out" 2>&1 || { fail "hsmsh run $step: $(show "$work/step.out")"; return 1; }
  done
  check "the image holds the source's objects ($(show "$work/step.out"))" \
    grep -q "7 objects (3 keys wrapped, 1 blocked)" "$work/step.out"
  ks_dump "$(u src)" > "$work/src.canon" && ks_dump "$(u dst)" > "$work/dst0.canon" || { fail "ks_dump"; return 1; }
  check "dst holds its identity and trust before the import ($(cut -f1 "$work/dst0.canon" | tr '\n' ' '))" \
    [ "$(wc -l < "$work/dst0.canon")" -ge 4 ]
}
ks_run() {
  { HSMSH_FAULT=$1 "$HSMSH" run protectserver/token-replication side=destination to="$(u dst fault)" \
      image="$L/files/x.img" "$SO" --yes --json --journal "$2" > "$L/out" 2> "$L/err" < /dev/null; } 2> /dev/null
  rc=$?
}
ks_check() { ks_oracle "$1" "$(u src)" "$(u dst)"; }
ks_main
