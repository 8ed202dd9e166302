# common.bash - sourced by the integration scripts (not a test itself): a private SoftHSM2
# token directory and XDG/HOME for this run, removed on exit, and the pass/fail counters.
# The script sets NAME and passes its $1 (the hsmsh binary) as the first argument.
HSMSH=$(realpath "${1:?usage: $0 /path/to/hsmsh}")
MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tokens" "$work/data" "$work/state" "$work/home"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" XDG_DATA_HOME="$work/data" \
  XDG_STATE_HOME="$work/state" HOME="$work/home"
cd "$work" || exit 1

passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
finish() { echo "$NAME: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
