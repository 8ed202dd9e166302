#!/usr/bin/env bash
# migrate_cli: the migration recipes from the command line. generic/migrate on the lab
# (dry run writes nothing, --json events, every key verified, re-runs change nothing, the
# journal holds no PIN, resume of a finished run, bad input refused with nothing written),
# and cloudhsm/rsa-aes-migrate in one process and split across two "machines" (two separate
# SoftHSM2 token directories that share nothing but the exchange directory).
# Usage: bash migrate_cli.sh /abs/path/to/hsmsh
set -u
NAME=migrate_cli
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

# The lab's tokens go where this run's SOFTHSM2_CONF points (an explicit one always wins).
"$HSMSH" lab init > /dev/null 2>&1
LAB_CONF=$SOFTHSM2_CONF
printf '1234' > "$work/pin"
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
GREEN="pkcs11:token=green?pin-source=file:$work/pin"

# json_field FILE EVENT FIELD: the field of the last line with that event.
json_field() {
  python3 -c 'import json,sys
ev=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ev=[e for e in ev if e.get("event")==sys.argv[2]]
print(ev[-1].get(sys.argv[3]) if ev else "none")' "$@"
}
field_is() {  # field_is EVENT FIELD VALUE
  local got; got=$(json_field out "$1" "$2")
  if [ "$got" = "$3" ]; then pass; else fail "$cmd: $1.$2 = $got, expected $3"; fi
}
inventory() {  # inventory URI CONF: sorted class/label/id/check lines
  SOFTHSM2_CONF=$2 "$HSMSH" run generic/inventory token="$1" --json 2>/dev/null | python3 -c '
import json,sys
for l in sys.stdin:
  e=json.loads(l)
  if e.get("event")=="object": print(e["class"], e["label"], e["id"], e.get("kcv") or e.get("fingerprint") or "")' | sort
}
count() { inventory "$1" "${2:-$SOFTHSM2_CONF}" | wc -l; }
# not_on A B: lines of inventory B with no match in A (same class, label, ID and check value;
# a destination line without a check value — SoftHSM2 records none for some unwrapped keys,
# which were verified by an operation instead — matches on class, label and ID).
not_on() {
  python3 -c 'import sys
a=[l.rsplit(" ",1) for l in sys.argv[1].splitlines() if l]
for l in sys.argv[2].splitlines():
  k,c=l.rsplit(" ",1)
  if not any(k==x and (c=="" or c==y) for x,y in a): print(l)' "$1" "$2"
}

blue_before=$(inventory "$BLUE" "$SOFTHSM2_CONF")

# ---- plan only ----
h run generic/migrate from="$BLUE" to="$GREEN" --dry-run; rc_is 0
has err "plan: 11 to wrap, 11 to copy, 0 already there, 3 blocked, 0 conflicts"
has err "rsa-aes/oaep-sha1 (composed: one AES-256 key per run"
has err "not extractable"
check "dry run writes nothing on green" [ "$(count "$GREEN")" -eq 0 ]
h run generic/migrate from="$BLUE" to="$GREEN" --dry-run --json; rc_is 0
check "--dry-run --json: one plan line per object" [ "$(grep -c '"event":"plan"' out)" -eq 25 ]

# ---- bad input: clear, one line, nothing written ----
h run generic/migrate from="$BLUE" to="$GREEN" transport=carrier-pigeon; rc_is 1
one_line; has err "parameter transport must be one of auto|rsa-aes|aes-kwp|rsa-oaep"
h run generic/migrate from="$BLUE" to="$GREEN" filter=colour=red; rc_is 1
one_line; has err "unknown filter 'colour'"
h run generic/migrate from="$BLUE" to="$GREEN" transport=aes-kwp; rc_is 1
has err "needs kek=LABEL"
h run generic/migrate from="$BLUE" to="$GREEN" transport=aes-kwp kek=kek; rc_is 1
has err "kek=kek names 0 keys on the destination token"
h run generic/migrate from="$BLUE" to="pkcs11:token=green?pin-value=99999"; rc_is 1
has err "CKR_PIN_INCORRECT"; lacks err "99999"
h run generic/migrate from="$BLUE" to="$GREEN" workers=0; rc_is 1
has err "workers must be between 1 and 32"
check "bad input wrote nothing on green" [ "$(count "$GREEN")" -eq 0 ]

# ---- the migration ----
h run generic/migrate from="$BLUE" to="$GREEN" --json --journal "$work/j1"; rc_is 0
field_is summary migrated 22; field_is summary skipped 0; field_is summary blocked 3; field_is summary failed 0
check "one key line per object" [ "$(grep -c '"event":"key"' out)" -eq 25 ]
has out '"status":"blocked","reason":"not extractable'
has out '"verified":"encrypted on the source, decrypted on the destination"'
has out '"verified":"signed on the destination, verified with the source public key"'
check "green holds 22 objects" [ "$(count "$GREEN")" -eq 22 ]
# Every migrated object shows the same check value on both sides.
blue_after=$(inventory "$BLUE" "$SOFTHSM2_CONF")
check "blue is unchanged" [ "$blue_before" = "$blue_after" ]
missing=$(not_on "$blue_after" "$(inventory "$GREEN" "$SOFTHSM2_CONF")")
check "every object on green is on blue with the same check value: $missing" [ -z "$missing" ]
check "journal has no PIN" bash -c "! grep -q 'pin-value' '$work/j1'"
check "journal names pin-source" grep -q 'pin-source' "$work/j1"
check "journal records each migrated object" [ "$(grep -c '"step":"done"' "$work/j1")" -eq 22 ]

# ---- again, and resume of the finished run: nothing changes ----
green_before=$(inventory "$GREEN" "$SOFTHSM2_CONF")
h run generic/migrate from="$BLUE" to="$GREEN" --json; rc_is 0
field_is summary migrated 0; field_is summary skipped 22
h resume "$work/j1" --json; rc_is 0
has err "that run finished"
field_is summary skipped 22
check "re-runs change nothing on green" [ "$green_before" = "$(inventory "$GREEN" "$SOFTHSM2_CONF")" ]
h resume "$work/nope"; rc_is 1; one_line; has err "cannot read journal"
printf 'not json\n{"event":"x"}\n' > "$work/bad"
h resume "$work/bad"; rc_is 1; one_line; has err "line 1"

# ---- a conflict stops the run before any write ----
"$HSMSH" -e "local s = require('hsm').token('pkcs11:token=blue?pin-source=file:$work/pin')
  assert(s:generate{type='AES', bits=128, label='clash', id='\\9\\9', CKA_EXTRACTABLE=true, CKA_ENCRYPT=true})
  local d = require('hsm').token('pkcs11:token=green?pin-source=file:$work/pin')
  assert(d:generate{type='AES', bits=128, label='clash', id='\\9\\9'})" > /dev/null 2>&1
green_before=$(inventory "$GREEN" "$SOFTHSM2_CONF")
h run generic/migrate from="$BLUE" to="$GREEN"; rc_is 1
has err "1 conflict(s)"
check "a conflict writes nothing" [ "$green_before" = "$(inventory "$GREEN" "$SOFTHSM2_CONF")" ]

# ---- parallel unwrapping: the same result, and a kill in the middle of a batch resumes ----
softhsm2-util --init-token --free --label par --pin 1234 --so-pin 12345678 > /dev/null
PAR="pkcs11:token=par?pin-source=file:$work/pin"
FPAR="pkcs11:token=par?module-path=${HSMSH_FAULT_LIB:?run through ctest}&pin-source=file:$work/pin"
FBLUE="pkcs11:token=blue?module-path=$HSMSH_FAULT_LIB&pin-source=file:$work/pin"
HSMSH_FAULT="kill:C_UnwrapKey:4:after" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run generic/migrate \
  from="$FBLUE" to="$FPAR" workers=3 --journal "$work/jp"
rc=$?; cmd="migrate workers=3 killed at the 4th C_UnwrapKey"; rc_is 137
h resume "$work/jp" --json; rc_is 0
field_is summary failed 0
h run generic/migrate from="$BLUE" to="$PAR" workers=3 --json; rc_is 0
field_is summary migrated 0; field_is summary skipped 23
missing=$(not_on "$(inventory "$BLUE" "$SOFTHSM2_CONF")" "$(inventory "$PAR" "$SOFTHSM2_CONF")")
check "workers=3 after a kill: every object on par is on blue, once: $missing" [ -z "$missing" ]
check "par holds 23 objects, none doubled" [ "$(count "$PAR")" -eq 23 ]

# ---- keep_transport leaves the run's RSA pair on the destination (and nothing on the source) ----
softhsm2-util --init-token --free --label kept --pin 1234 --so-pin 12345678 > /dev/null
KEPT="pkcs11:token=kept?pin-source=file:$work/pin"
h run generic/migrate from="$BLUE" to="$KEPT" filter=label=aes-128 keep_transport=true; rc_is 0
check "the transport pair stays on the destination" [ "$(inventory "$KEPT" "$SOFTHSM2_CONF" | grep -c hsmsh-transport-)" -eq 2 ]
check "nothing of it on the source" [ "$(inventory "$BLUE" "$SOFTHSM2_CONF" | grep -c hsmsh-transport)" -eq 0 ]

# ---- capacity and FIPS model the target's limits ----
softhsm2-util --init-token --free --label small --pin 1234 --so-pin 12345678 > /dev/null
SMALL="pkcs11:token=small?pin-source=file:$work/pin"
h run generic/migrate from="$BLUE" to="$SMALL" capacity=5 fips=true filter=class=secret-key --json; rc_is 0
field_is summary migrated 5
has out "3DES into a FIPS target"
has out "over capacity: the destination holds at most 5 keys"

# ---- cloudhsm/rsa-aes-migrate: one process ----
softhsm2-util --init-token --free --label green2 --pin 1234 --so-pin 12345678 > /dev/null
h run cloudhsm/rsa-aes-migrate from="$BLUE" to="pkcs11:token=green2?pin-source=file:$work/pin" dir="$work/x1/sub" filter=label=aes-* --json
rc_is 0
check "the missing exchange directory was made, mode 0700 ($(stat -c %a "$work/x1/sub" 2>&1))" [ "$(stat -c %a "$work/x1/sub")" = 700 ]
field_is summary migrated 2; field_is summary blocked 2; field_is summary failed 0
check "no wrapping pair left on green2" [ "$(inventory "pkcs11:token=green2?pin-source=file:$work/pin" "$SOFTHSM2_CONF" | grep -c wrapping)" -eq 0 ]

# ---- cloudhsm/rsa-aes-migrate: two machines, sharing only the exchange directory ----
mkdir -p "$work/m2/tokens"
printf 'directories.tokendir = %s/m2/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/m2/softhsm2.conf"
SOFTHSM2_CONF="$work/m2/softhsm2.conf" softhsm2-util --init-token --free --label hsm2 --pin 1234 --so-pin 12345678 > /dev/null
HSM2="pkcs11:token=hsm2?pin-source=file:$work/pin"
export SOFTHSM2_CONF="$work/m2/softhsm2.conf"
h run cloudhsm/rsa-aes-migrate side=destination step=prepare to="$HSM2" dir="$work/xfer"; rc_is 0
check "step 2 wrote the public key" grep -q 'BEGIN PUBLIC KEY' "$work/xfer/wrapping-key.pem"
h run cloudhsm/rsa-aes-migrate side=destination step=prepare from="$BLUE" dir="$work/xfer"; rc_is 1
has err "needs to=URI"
export SOFTHSM2_CONF=$LAB_CONF
h run cloudhsm/rsa-aes-migrate side=source from="$BLUE" dir="$work/xfer" filter=class=secret-key; rc_is 0
has err "step 5: wrapped 8 keys"   # 7 lab keys and clash
check "no key material in the manifest" bash -c "! grep -q CKA_VALUE\\\" '$work/xfer/manifest.jsonl'"
export SOFTHSM2_CONF="$work/m2/softhsm2.conf"
# A damaged blob is refused before anything is written.
blob=$(ls "$work"/xfer/key-*.bin | head -n 1)   # which numbers exist follows the source order
cp "$blob" "$work/saved.bin"
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[100]^=0xff; open(p,"wb").write(b)' "$blob"
h run cloudhsm/rsa-aes-migrate side=destination step=finish to="$HSM2" dir="$work/xfer"; rc_is 1
has err "$(basename "$blob") does not match its SHA-256"
check "a damaged exchange writes nothing" [ "$(count "$HSM2")" -eq 2 ]
cp "$work/saved.bin" "$blob"
h run cloudhsm/rsa-aes-migrate side=destination step=finish to="$HSM2" dir="$work/xfer" --json; rc_is 0
field_is summary migrated 8; field_is summary failed 0
has out '"verified":"decrypted on the destination what the source encrypted"'
has out '"verified":"verified on the destination the source'"'"'s MAC"'
hsm2_keys=$(inventory "$HSM2" "$SOFTHSM2_CONF")
blue_keys=$(inventory "$BLUE" "$LAB_CONF")
missing=$(not_on "$blue_keys" "$hsm2_keys")
check "every key on hsm2 is on blue with the same KCV: $missing" [ -z "$missing" ]
check "hsm2 holds the 8 keys and no wrapping pair" [ "$(echo "$hsm2_keys" | grep -c .)" -eq 8 ]
h run cloudhsm/rsa-aes-migrate side=destination step=finish to="$HSM2" dir="$work/xfer"; rc_is 1
has err "no rsa-unwrapping-key"

finish
