#!/usr/bin/env bash
# kill_sweep_restore: DESIGN invariants 1, 2 and 5 for an archive restore
# (protectserver/backup-file side=restore, the wrapping key from two custodian components)
# after kill -9 and `hsmsh resume JOURNAL --yes` (a kill before the journal's first line: the
# documented re-run), through tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB) on SoftHSM2
# tokens in /dev/shm. The archive of kill_sweep.bash's small source (AES, HMAC, EC pair and
# certificate, data object; its non-extractable key is listed, not exported) is made once,
# directly; then the restore onto an empty token is killed before and after EVERY PKCS#11
# call index of a run (all of them, in CI), each run resumed, and after every resume the
# oracle of kill_sweep.bash (SoftHSM2 directly): each archived object on the destination
# exactly once, nothing else (no wrapping key, lease or half-made object), every attribute
# equal to the source's but the documented forced ones, each key proven by value, each key
# event's `differs` exact, the source unchanged.
# Usage: bash kill_sweep_restore.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
NAME=kill_sweep_restore
# shellcheck source=kill_sweep.bash
source "$(dirname "${BASH_SOURCE[0]}")/kill_sweep.bash" "$@"
KS_RESUME=(--yes)
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
COMPS="components=file:$work/c1,file:$work/c2"

ks_fixture() {
  mk_token src && mk_token dst || { fail "softhsm2-util --init-token"; return 1; }
  ks_source "$(u src)" || return 1
  "$HSMSH" run protectserver/backup-file side=backup token="$(u src)" file="$I/files/a.arc" "$COMPS" --yes \
    > "$work/backup.out" 2>&1 || { fail "the backup: $(show "$work/backup.out")"; return 1; }
  check "the archive holds the source's objects ($(show "$work/backup.out"))" \
    grep -q "7 objects (3 keys wrapped, 1 not exportable)" "$work/backup.out"
  ks_dump "$(u src)" > "$work/src.canon" && ks_dump "$(u dst)" > "$work/dst0.canon" || { fail "ks_dump"; return 1; }
}
ks_run() {
  { HSMSH_FAULT=$1 "$HSMSH" run protectserver/backup-file side=restore token="$(u dst fault)" \
      file="$L/files/a.arc" "$COMPS" --yes --json --journal "$2" > "$L/out" 2> "$L/err" < /dev/null; } 2> /dev/null
  rc=$?
}
ks_check() { ks_oracle "$1" "$(u src)" "$(u dst)"; }
ks_main
