#!/usr/bin/env bash
# fault_module: the fault-injecting PKCS#11 module tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB,
# set by ctest) wrapping SoftHSM2: pass-through, FN:K:CKR before/after, FN:*, hex CKRs, kill:N
# and kill:FN:K[:after] (exit 137, the count file written at the kill point), the count file
# (HSMSH_FAULT_COUNT) and the log (HSMSH_FAULT_LOG), malformed rules. Driven by hsmsh and
# pkcs11-tool; what was really created is checked through SoftHSM2 directly.
# Usage: bash fault_module.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
set -u
NAME=fault_module
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}   # before common.bash changes directory
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }

if [ -z "${HSMSH_FAULT_LIB:-}" ]; then
  fail "HSMSH_FAULT_LIB is not set (ctest sets it to the built libfaultp11.so; when running" \
    "by hand: HSMSH_FAULT_LIB=build/tests/fault/libfaultp11.so bash $0 build/hsmsh)"
  finish
fi
if [ ! -f "$FLIB" ]; then
  fail "HSMSH_FAULT_LIB=$HSMSH_FAULT_LIB does not exist (build the faultp11 target)"
  finish
fi
unset HSMSH_FAULT HSMSH_FAULT_COUNT HSMSH_FAULT_LOG HSMSH_FAULT_MODULE
export HSMSH_FAULT_MODULE=$MODULE

softhsm2-util --init-token --free --label t1 --pin 1234 --so-pin 12345678 > /dev/null ||
  { fail "softhsm2-util --init-token t1"; finish; }

COUNT=$work/count LOG=$work/log
URI="pkcs11:token=t1?module-path=$FLIB&pin-value=1234"
OPEN="local hsm = require('hsm'); local s = hsm.token('$URI')"
show() { printf '%s' "$(head -c 400 "$1" 2>/dev/null | tr '\n' '|')"; }

# hf RULES CHUNK: runs hsmsh -e "OPEN; CHUNK" through the fault module with HSMSH_FAULT=RULES,
# fresh count and log files; sets $rc, files out/err, $cmd. A SIGKILL gives rc 137 (bash's
# "Killed" notice goes to /dev/null).
hf() {
  cmd="HSMSH_FAULT='$1' hsmsh -e '$2'"
  rm -f "$COUNT" "$LOG"
  { HSMSH_FAULT=$1 HSMSH_FAULT_COUNT=$COUNT HSMSH_FAULT_LOG=$LOG \
      "$HSMSH" -e "$OPEN; $2" > out 2> err < /dev/null; } 2> /dev/null
  rc=$?
}
# pt RULES ARGS...: pkcs11-tool through the fault module.
pt() {
  cmd="HSMSH_FAULT='$1' pkcs11-tool $*"
  local rules=$1; shift
  rm -f "$COUNT" "$LOG"
  { HSMSH_FAULT=$rules HSMSH_FAULT_COUNT=$COUNT HSMSH_FAULT_LOG=$LOG \
      pkcs11-tool --module "$FLIB" "$@" > out 2> err < /dev/null; } 2> /dev/null
  rc=$?
}
rc_is() { if [ "$rc" -eq "$1" ]; then pass; else fail "$cmd: exit $rc, expected $1 (stderr: $(show err))"; fi; }
has() {  # has FILE TEXT
  if grep -qsF -- "$2" "$1"; then pass; else fail "$cmd: $1 lacks '$2' ($1: $(show "$1"))"; fi
}
lacks() {  # lacks FILE TEXT
  if grep -qsF -- "$2" "$1"; then fail "$cmd: $1 contains '$2' ($1: $(show "$1"))"; else pass; fi
}
# real_count LABEL: the number of secret keys labelled LABEL on t1, seen through SoftHSM2 itself.
# (a pkcs11-tool failure gives "pkcs11-tool-failed", which no count comparison accepts)
real_count() {
  local out
  out=$(pkcs11-tool --module "$MODULE" --login --pin 1234 --token-label t1 --list-objects \
    --type secrkey 2>/dev/null) || { echo pkcs11-tool-failed; return; }
  grep -cE "^ +label: +$1\$" <<< "$out"
}
label_count_is() {  # label_count_is LABEL N WHY
  local got; got=$(real_count "$1")
  if [ "$got" -eq "$2" ]; then pass; else fail "$3: $got keys labelled '$1' on t1, expected $2"; fi
}
count_of() {  # count_of NAME: the value of line "NAME N" of the count file (empty if none)
  awk -v k="$1" '$1 == k { print $2 }' "$COUNT" 2>/dev/null
}
count_is() {  # count_is NAME N
  local got; got=$(count_of "$1")
  if [ "$got" = "$2" ]; then pass; else fail "$cmd: count file says '$1 $got', expected $2 ($(show "$COUNT"))"; fi
}
gen() {  # gen LABEL: a chunk generating one AES key, printing "ok" or the error
  printf 'local k, e = s:generate{type = "AES", bits = 128, label = "%s"}; print(k and "ok" or e)' "$1"
}

# ---- pass-through ----
pt "" -L
rc_is 0; has out "token label        : t1"
count_is C_Finalize 1                  # the count file is written at C_Finalize
hf "" "$(gen pass1); print(#s:objects{label = 'pass1'})"
rc_is 0
check "generate through the fault module printed 'ok' and 1 object (got '$(show out)')" \
  [ "$(cat out)" = "$(printf 'ok\n1')" ]
label_count_is pass1 1 "a key generated through the fault module"

# ---- the count file and the log of that run ----
total=$(count_of total)
check "count file: total is a positive number (got '$total')" [ "${total:-0}" -gt 0 ]
count_is C_Initialize 1
count_is C_GenerateKey 1
count_is C_GetFunctionStatus 0
sum=$(awk '$1 != "total" { s += $2 } END { print s + 0 }' "$COUNT" 2>/dev/null)
check "count file: per-function counts add up to total ($sum vs $total)" [ "$sum" = "$total" ]
nfn=$(grep -cs '^C_' "$COUNT")
check "count file: one line per counted function (67: all of 2.40 but C_GetFunctionList; got $nfn)" \
  [ "${nfn:-0}" -eq 67 ]
check "log: $total lines, numbered 1..$total (got $( { wc -l < "$LOG"; } 2>/dev/null))" \
  awk -v n="$total" '$1 != NR { exit 1 } END { exit NR != n }' "$LOG" 2>/dev/null
gk_at=$(awk '$2 == "C_GenerateKey" { print $1; exit }' "$LOG" 2>/dev/null)
has "$LOG" "$gk_at C_GenerateKey CKR_OK"
check "log: the first call is C_Initialize" [ "$(head -n 1 "$LOG" 2>/dev/null)" = "1 C_Initialize CKR_OK" ]

# ---- FN:K:CKR (before, the default): the error, and nothing done ----
hf "C_GenerateKey:1:CKR_DEVICE_ERROR" "$(gen before1)"
rc_is 0; has out "CKR_DEVICE_ERROR"
label_count_is before1 0 "a 'before' fault on C_GenerateKey:1"
has "$LOG" "C_GenerateKey CKR_DEVICE_ERROR injected"
hf "C_GenerateKey:1:CKR_DEVICE_ERROR:before" "$(gen before2)"
has out "CKR_DEVICE_ERROR"; label_count_is before2 0 "an explicit ':before' fault"

# ---- :after: the real call is made (the key exists), the error is returned anyway ----
hf "C_GenerateKey:1:CKR_DEVICE_MEMORY:after" "$(gen after1); print(#s:objects{label = 'after1'})"
rc_is 0
check "an 'after' fault returns CKR_DEVICE_MEMORY (got '$(show out)')" \
  [ "$(head -n 1 out)" = "C_GenerateKey: CKR_DEVICE_MEMORY" ]
check "the 'after' key is visible in the same session (got '$(show out)')" [ "$(sed -n 2p out)" = 1 ]
label_count_is after1 1 "an 'after' fault on C_GenerateKey:1"

# ---- the K-th call, '*', hex values, several rules with whitespace ----
hf "C_GenerateKey:2:CKR_FUNCTION_FAILED" "$(gen k1); $(gen k2); $(gen k3)"
check "C_GenerateKey:2 fails only the second call (got '$(show out)')" \
  [ "$(cat out)" = "$(printf 'ok\nC_GenerateKey: CKR_FUNCTION_FAILED\nok')" ]
label_count_is k2 0 "C_GenerateKey:2"; label_count_is k3 1 "the third call after a C_GenerateKey:2 rule"
hf "C_GenerateKey:*:CKR_GENERAL_ERROR" "$(gen star); $(gen star); $(gen star)"
check "C_GenerateKey:* fails every call (got '$(show out)')" \
  [ "$(grep -c 'CKR_GENERAL_ERROR' out)" -eq 3 ]
label_count_is star 0 "C_GenerateKey:*"
count_is C_GenerateKey 3
hf "C_GenerateKey:1:0x110" "$(gen hex)"
has out "CKR_WRAPPED_KEY_INVALID"; label_count_is hex 0 "C_GenerateKey:1:0x110"
hf "  C_Login : 1 : CKR_PIN_INCORRECT ;; C_GenerateKey:*:CKR_GENERAL_ERROR ; " "print('opened')"
rc_is 1; has err "CKR_PIN_INCORRECT"
pt "C_GetSlotList:*:CKR_TOKEN_NOT_PRESENT" -L
rc_is 1; has err "CKR_TOKEN_NOT_PRESENT"

# ---- kill:N, kill:FN:K, kill:...:after ----
kill_at=$gk_at   # the C_GenerateKey call of the pass-through run, counted overall
hf "kill:$kill_at" "$(gen kill1)"
rc_is 137
count_is total "$kill_at"              # written just before the kill
count_is C_GenerateKey 1
last_line=$(tail -n 1 "$LOG" 2>/dev/null)
check "log: the last line is '$kill_at C_GenerateKey KILL' (got '$last_line')" \
  [ "$last_line" = "$kill_at C_GenerateKey KILL" ]
label_count_is kill1 0 "kill:$kill_at (before C_GenerateKey)"
hf "kill:C_GenerateKey:1:after" "$(gen kill2)"
rc_is 137; count_is total "$kill_at"
label_count_is kill2 1 "kill:C_GenerateKey:1:after"
hf "kill:C_Login:1" "$(gen kill3)"
rc_is 137; count_is C_Login 1; count_is C_GenerateKey 0
# the kill points of a run are 1..total: killing at the last call kills, one past it does not
hf "" "$(gen sweep0)"; last=$(count_of total)
hf "kill:$last" "$(gen sweep1)"; rc_is 137; count_is total "$last"
hf "kill:$((last + 1))" "$(gen sweep2)"; rc_is 0; count_is total "$last"
pt "kill:1" -L
rc_is 137; count_is total 1; count_is C_Initialize 1

# ---- malformed rules: C_Initialize fails with CKR_ARGUMENTS_BAD, stderr names the rule ----
for bad in "C_Bogus:1:CKR_DEVICE_ERROR" "C_GenerateKey:0:CKR_DEVICE_ERROR" \
    "C_GenerateKey:1:CKR_NOPE" "C_GenerateKey:1:CKR_DEVICE_ERROR:later" "kill:soon" \
    "C_GenerateKey:1"; do
  hf "C_Login:*:CKR_PIN_INCORRECT;$bad" "print('opened')"
  rc_is 1; has err "bad rule '$bad'"; has err "CKR_ARGUMENTS_BAD"
  # hsmsh dlcloses the module after a failed C_Initialize: under the sanitizers, no report
  # (no use after free, no double close); leaks are not checked (CI runs detect_leaks=0)
  lacks err "Sanitizer"
done
pt "C_Bogus:1:CKR_DEVICE_ERROR" -L
rc_is 1; has err "bad rule 'C_Bogus:1:CKR_DEVICE_ERROR'"

# ---- a real module that cannot be loaded ----
{ HSMSH_FAULT_MODULE=$work/nonexistent.so pkcs11-tool --module "$FLIB" -L > out 2> err; } 2> /dev/null
rc=$? cmd="HSMSH_FAULT_MODULE=nonexistent pkcs11-tool -L"
check "$cmd fails (exit $rc)" [ "$rc" -ne 0 ]; has err "cannot load $work/nonexistent.so"

finish
