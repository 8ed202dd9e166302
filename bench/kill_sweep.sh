#!/usr/bin/env bash
# bench/kill_sweep.sh: the full kill sweeps, every PKCS#11 call index of each workflow killed
# before and after (KILL_SWEEP_FULL=1), the run resumed and checked by the oracle of
# tests/integration/kill_sweep.bash; for generic/migrate, the restore and the image import
# also every index of the resume's own calls (KILL_SWEEP_RESUME=1 for the last two). Prints,
# per workflow, the calls of a run (T) and of a resume (R), the kill points, the violations
# and the seconds; exits non-zero if any sweep found a violation.
# In CI (ctest) the restore, image and master-key sweeps are already full; the migration's is
# windowed (tests/integration/kill_sweep_migrate.sh says what it covers).
# Usage: bench/kill_sweep.sh [build/hsmsh] [WORKFLOW...]   (migrate restore image master_key)
# Environment: KILL_SWEEP_JOBS (default 2), KILL_SWEEP_TMP (default /dev/shm), HSMSH_FAULT_LIB
# (default: build/tests/fault/libfaultp11.so beside the hsmsh binary).
set -u
HSMSH=$(realpath "${1:-build/hsmsh}")
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
export HSMSH_FAULT_LIB=${HSMSH_FAULT_LIB:-$(dirname "$HSMSH")/tests/fault/libfaultp11.so}
export KILL_SWEEP_FULL=1
[ -f "$HSMSH_FAULT_LIB" ] || { echo "no $HSMSH_FAULT_LIB: build the tests first" >&2; exit 1; }
status=0
for w in "${@:-migrate restore image master_key}"; do
  for x in $w; do
    t=$SECONDS
    # the restore and the image import: their resumes are killed at every index too
    case $x in restore|image) resume=1 ;; *) resume=0 ;; esac
    out=$(KILL_SWEEP_RESUME=$resume bash "$here/tests/integration/kill_sweep_$x.sh" "$HSMSH" 2>&1); rc=$?
    grep -E "^kill_sweep_$x: |^note: " <<< "$out"
    grep -m 20 '^FAIL' <<< "$out"
    echo "kill_sweep_$x: exit $rc, $((SECONDS - t)) s wall"
    [ "$rc" -eq 0 ] || status=1
  done
done
exit $status
