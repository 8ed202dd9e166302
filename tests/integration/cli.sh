#!/usr/bin/env bash
# cli: exit codes and messages of hsmsh's command line (DESIGN "Command line": 0 ok, 1 error,
# 2 usage; a clear message on stderr naming the problem, no traceback without --debug), PIN
# handling (never echoed, wrong PIN changes nothing, pin-source=file:), and the lab.
# Usage: bash cli.sh /abs/path/to/hsmsh
set -u
NAME=cli
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
first_line_has() {
  if head -n 1 err | grep -qF -- "$1"; then pass
  else fail "$cmd: the first stderr line does not name '$1' (stderr: $(show err))"; fi
}
summary_is() {  # summary_is N: the --json summary line says objects=N
  local got
  got=$(python3 -c 'import json,sys
lines=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
s=[l for l in lines if l.get("event")=="summary"]
o=[l for l in lines if l.get("event")=="object"]
print("%s/%d" % (s[-1].get("objects") if s else "none", len(o)))' out 2>&1)
  if [ "$got" = "$1/$1" ]; then pass
  else fail "$cmd: summary objects/object lines = $got, expected $1/$1"; fi
}
# p11count CONF TOKEN: number of objects pkcs11-tool sees (logged in).
# (a pkcs11-tool failure gives "pkcs11-tool-failed", which no count comparison accepts)
p11count() {
  local out
  out=$(SOFTHSM2_CONF=$1 pkcs11-tool --module "$MODULE" --login --pin 1234 --token-label "$2" \
    --list-objects 2>/dev/null) || { echo pkcs11-tool-failed; return; }
  grep -cE '^(Secret Key|Private Key|Public Key|Certificate) Object|^Data object' <<< "$out"
}

# ---- global options, Lua chunks and files ----
h --version; rc_is 0; has out "hsmsh 0.1.0"
h --help; rc_is 0; has out "run RECIPE"
h -e 'print(1+1)'; rc_is 0
check "hsmsh -e 'print(1+1)' prints 2 (got '$(show out)')" [ "$(cat out)" = 2 ]
h -e 'error("boom")'; rc_is 1; has err boom; one_line
h --debug -e 'error("boom")'; rc_is 1; has err boom; has err "stack traceback"
printf 'print(arg[0] == "script.lua" and arg[1] == "a" and arg[2] == "b" and #arg == 2)\n' > script.lua
h script.lua a b; rc_is 0
check "hsmsh script.lua a b: arg[0]=='script.lua', arg[1]=='a', arg[2]=='b' (got '$(show out)')" \
  [ "$(cat out)" = true ]
h_in 'print(42)' -; rc_is 0
check "echo 'print(42)' | hsmsh - prints 42 (got '$(show out)')" [ "$(cat out)" = 42 ]
h_in 'print(7)'; rc_is 0
check "echo 'print(7)' | hsmsh (stdin not a TTY) prints 7 (got '$(show out)')" [ "$(cat out)" = 7 ]
h missing.lua; rc_is 1; has err missing.lua; one_line

# ---- usage errors: exit 2, the first line names the problem ----
h --bogus; rc_is 2; first_line_has "'--bogus'"
h -e; rc_is 2; first_line_has "-e"
h run; rc_is 2; first_line_has "recipe"
h recipes extra; rc_is 2
h lab; rc_is 2
h resume; rc_is 2
h run generic/inventory token=x --frobnicate; rc_is 2; first_line_has "--frobnicate"

# ---- recipe and parameter errors: exit 1, one line naming the problem ----
h run nope/nope; rc_is 1; has err "unknown recipe 'nope/nope'"; one_line
h run generic/inventory@9.9.9 token=x; rc_is 1; has err "9.9.9"; one_line
h run generic/inventory; rc_is 1; has err token; one_line
h run generic/inventory tokn=x; rc_is 1; has err tokn; one_line
h run generic/inventory 'token=pkcs11:tokn=x'; rc_is 1; has err tokn; one_line

h recipes; rc_is 0; has out generic/inventory; has out 1.0.0

# ---- a token of our own: lookup, PINs ----
if softhsm2-util --init-token --free --label it --so-pin 12345678 --pin 1234 > setup.out 2>&1 &&
   pkcs11-tool --module "$MODULE" --login --pin 1234 --token-label it --keygen --key-type AES:32 \
     --label k1 --id 01 >> setup.out 2>&1 &&
   pkcs11-tool --module "$MODULE" --login --pin 1234 --token-label it --write-object script.lua \
     --type data --label d1 >> setup.out 2>&1; then
  pass
else
  fail "setup: token 'it' with two objects: $(show setup.out)"; finish
fi
IT='pkcs11:token=it?pin-value=1234'
h run generic/inventory "token=$IT" --json; rc_is 0; summary_is 2
h run generic/inventory@1.0.0 "token=$IT" --json; rc_is 0; summary_is 2
h run generic/inventory 'token=pkcs11:token=nosuch?pin-value=1234'; rc_is 1; has err "no token matches"; one_line

before=$(p11count "$SOFTHSM2_CONF" it)
h run generic/inventory 'token=pkcs11:token=it?pin-value=987654'
rc_is 1; has err CKR_PIN_INCORRECT; lacks err 987654; lacks out 987654; one_line
h --debug run generic/inventory 'token=pkcs11:token=it?pin-value=987654' --json
rc_is 1; has err CKR_PIN_INCORRECT; lacks err 987654; lacks out 987654
after=$(p11count "$SOFTHSM2_CONF" it)
check "a wrong PIN leaves token it unchanged (pkcs11-tool objects before $before, after $after)" \
  [ "$before" = 2 -a "$after" = 2 ]
h run generic/inventory "token=$IT" --json; rc_is 0; summary_is 2

printf '1234\n' > pin.txt
h run generic/inventory "token=pkcs11:token=it?pin-source=file:$work/pin.txt" --json; rc_is 0; summary_is 2
printf '987654\n' > badpin.txt
h run generic/inventory "token=pkcs11:token=it?pin-source=file:$work/badpin.txt"
rc_is 1; has err CKR_PIN_INCORRECT; lacks err 987654; one_line
h run generic/inventory "token=pkcs11:token=it?pin-source=file:$work/nopin.txt"
rc_is 1; has err "$work/nopin.txt"; one_line
# A user-facing message, not an internal Lua source position.
check "$cmd: stderr shows no internal source position ($(show err))" \
  eval '! grep -qE "[A-Za-z_/]+\.lua:[0-9]+:" err'

# ---- the lab, found by default (no SOFTHSM2_CONF) under XDG_DATA_HOME ----
unset SOFTHSM2_CONF
export XDG_DATA_HOME="$work/lab-data"
BLUE='token=pkcs11:token=blue?pin-value=1234'
# 9 secret keys + 5 key pairs with a certificate each (15) + 1 data object (stdlib/hsm/lab.lua).
LAB_OBJECTS=25
h lab init; rc_is 0
labconf="$XDG_DATA_HOME/hsmsh/lab/softhsm2.conf"
check "lab init wrote $labconf" [ -f "$labconf" ]
h run generic/inventory "$BLUE" --json; rc_is 0; summary_is "$LAB_OBJECTS"
n=$(p11count "$labconf" blue)
check "pkcs11-tool sees $LAB_OBJECTS objects on lab token blue (got $n)" [ "$n" = "$LAB_OBJECTS" ]
h run generic/inventory 'token=pkcs11:token=green?pin-value=1234' --json; rc_is 0; summary_is 0
h lab init; rc_is 0; cat out err > both; cmd="hsmsh lab init (again)"; has both "already there"
h run generic/inventory "$BLUE" --json; rc_is 0; summary_is "$LAB_OBJECTS"
h run generic/inventory "$BLUE" --dry-run; rc_is 0
cat out err > both; cmd="hsmsh run generic/inventory --dry-run"
has both aes-256-fixed; has both ec-p521; has both site-config; has both "$LAB_OBJECTS objects"
h run generic/inventory "$BLUE" --dry-run --json; rc_is 0; summary_is "$LAB_OBJECTS"
n=$(p11count "$labconf" blue)
check "blue still has $LAB_OBJECTS objects after the runs (got $n)" [ "$n" = "$LAB_OBJECTS" ]

# ---- lab init --dir DIR: the tokens under DIR, whatever SOFTHSM2_CONF or the default lab says ----
for env in "" "SOFTHSM2_CONF=$labconf"; do
  d=$work/lab-dir-${env:+env}x
  if [ -n "$env" ]; then SOFTHSM2_CONF=$labconf h lab init --dir "$d"; else h lab init --dir "$d"; fi
  rc_is 0
  n=$(p11count "$d/softhsm2.conf" blue)
  check "lab init --dir $d ${env:+($env)}: pkcs11-tool sees $LAB_OBJECTS objects on blue under DIR (got $n)" [ "$n" = "$LAB_OBJECTS" ]
  check "lab init --dir: 5 tokens (blue, green, card-1..3) under $d/tokens (got $(ls "$d/tokens" 2>/dev/null | wc -l))" [ "$(ls "$d/tokens" | wc -l)" -eq 5 ]
  cat out err > both; has both "export SOFTHSM2_CONF=$d/softhsm2.conf"
done
n=$(p11count "$labconf" blue)
check "the default lab's blue is untouched by lab init --dir (got $n)" [ "$n" = "$LAB_OBJECTS" ]
check "the default lab still has its 5 tokens" [ "$(ls "$XDG_DATA_HOME/hsmsh/lab/tokens" | wc -l)" -eq 5 ]

finish
