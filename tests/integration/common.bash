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

# Checks shared by the scripts.
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }

# h ARGS...: runs hsmsh; sets $rc, files out/err, and $cmd for messages.
h() {
  cmd="hsmsh $*"
  "$HSMSH" "$@" > out 2> err < /dev/null
  rc=$?
}
# h_in INPUT ARGS...: the same with INPUT on stdin.
h_in() {
  local input=$1; shift
  cmd="hsmsh $* (stdin: $input)"
  printf '%s\n' "$input" | "$HSMSH" "$@" > out 2> err
  rc=$?
}
show() { printf '%s' "$(head -c 400 "$1" | tr '\n' '|')"; }
rc_is() { if [ "$rc" -eq "$1" ]; then pass; else fail "$cmd: exit $rc, expected $1 (stderr: $(show err))"; fi; }
has() {  # has FILE TEXT
  if grep -qF -- "$2" "$1"; then pass; else fail "$cmd: $1 lacks '$2' ($1: $(show "$1"))"; fi
}
lacks() {  # lacks FILE TEXT
  if grep -qF -- "$2" "$1"; then fail "$cmd: $1 contains '$2' ($1: $(show "$1"))"; else pass; fi
}
one_line() {  # the error is one line on stderr, with no traceback
  local n; n=$(grep -c . err)
  if [ "$n" -eq 1 ]; then pass; else fail "$cmd: stderr has $n lines, expected 1 ($(show err))"; fi
  lacks err "stack traceback"
}

# secret_kcvs TOKEN: "LABEL KCV" of every secret key on TOKEN (SoftHSM2, the PIN in
# $work/pin) but the blue/green replication keys, sorted; KCV "nil" when none can be had.
secret_kcvs() {
  U="pkcs11:token=$1?pin-source=file:$work/pin" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
    local keys, rows = require("hsm.keys"), {}
    for _, o in ipairs(assert(s:objects())) do
      if o.class == "CKO_SECRET_KEY" and not o.label:match("^hsmsh%-bluegreen%-") then
        rows[#rows + 1] = o.label .. " " .. tostring(keys.kcv(o))
      end
    end
    table.sort(rows)
    print(table.concat(rows, "\n"))'
}
