#!/usr/bin/env bash
# cloudhsm_bluegreen: seed 002's CloudHSM procedures on real tokens (hsm1 = blue, hsm2 = green,
# SoftHSM2; hsm2 reached through the fault-injecting module so a step can be killed inside
# it), with pkcs11-tool as the application on libhsmsh-route.so.
#  - cloudhsm/key-replicate refuses two tokens of no lineage, then (after a prepare made one)
#    copies the key its CloudHSM CLI filter names, verified, and finds it there the next time;
#  - cloudhsm/hsm1-to-hsm2 option=customer-triggered step=migrate: writes through the route
#    are refused while it runs (it is killed inside hsm2's 3rd C_UnwrapKey and the route is
#    left in limited-write mode), the step run again finishes: hsm2 holds hsm1's keys, serves
#    and takes writes (a key made through the route lands on hsm2); step=rollback points back;
#  - option=customer-managed: migrate, monitor, rollback, decommission;
#  - option=high-availability with fips=true: a backup holding 3DES is refused; source=migrate
#    keeps the 3DES key on hsm1 (blocked, listed by parity as served from blue);
#  - a step another option has is refused naming the option's steps.
set -u
NAME=cloudhsm_bluegreen
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
ROUTE=${HSMSH_ROUTE_LIB:?run through ctest}   # the plain module: pkcs11-tool loads it
if [ -z "$FLIB" ] || [ ! -f "$FLIB" ]; then fail "HSMSH_FAULT_LIB is not the built libfaultp11.so"; finish; fi
unset HSMSH_FAULT
export HSMSH_FAULT_MODULE=$MODULE
printf '1234' > pin
tokens() { for t in "$@"; do softhsm2-util --init-token --free --label "$t" --pin 1234 --so-pin 12345678 > /dev/null; done; }
uri() { echo "pkcs11:token=$1?pin-source=file:$work/pin"; }
keys_on() {  # keys_on TOKEN N [3des]: N AES keys (and a 3DES one)
  U=$(uri "$1") N=$2 D=${3:-} "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
    for i = 1, tonumber(os.getenv("N")) do
      assert(s:generate{type = "AES", bits = 256, label = "key-" .. i, id = string.char(i),
                        CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
    end
    if os.getenv("D") ~= "" then
      assert(s:generate{type = "DES3", label = "des3", id = "\x33", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
    end' || fail "making keys on $1"
}

# ---- key replicate
tokens c1 c2
keys_on c1 2
h run cloudhsm/key-replicate filter=attr.label=key-1 source="$(uri c1)" destination="$(uri c2)"
rc_is 1; has err "share no replication key, so they are not of one lineage"
h run cloudhsm/key-replicate filter=label=key-1 source="$(uri c1)" destination="$(uri c2)"
rc_is 1; has err "filter label=key-1: give attr.NAME=VALUE"
h run generic/blue-green step=prepare state="$work/c.state" blue="$(uri c1)" green="$(uri c2)"
rc_is 0
U=$(uri c1) "$HSMSH" -e 'assert(require("hsm").token(os.getenv("U")):generate{type = "AES", bits = 256,
  label = "example-aes-2", id = "\x42", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})'
h run cloudhsm/key-replicate filter=attr.label=example-aes-2 source="$(uri c1)" destination="$(uri c2)"
rc_is 0; has err "replicated 1, 0 already there"
check "example-aes-2 is on c2 with c1's KCV" [ "$(secret_kcvs c1 | grep '^example-aes-2 ')" = "$(secret_kcvs c2 | grep '^example-aes-2 ')" ]
h run cloudhsm/key-replicate filter=attr.label=example-aes-2 source="$(uri c1)" destination="$(uri c2)"
rc_is 0; has err "replicated 0, 1 already there"
h run cloudhsm/key-replicate filter=attr.label=nothing-like-it source="$(uri c1)" destination="$(uri c2)"
rc_is 1; has err "no key on the source matches the filter"

# ---- customer triggered: limited-write during the migration, killed inside it, run again
tokens hsm1 hsm2
keys_on hsm1 4
S=$work/t.state
H1=$(uri hsm1) H2="pkcs11:token=hsm2?module-path=$FLIB&pin-source=file:$work/pin"
ct() { h run cloudhsm/hsm1-to-hsm2 option=customer-triggered state="$S" "$@"; }
HSMSH_FAULT="kill:C_UnwrapKey:3" "$HSMSH" run cloudhsm/hsm1-to-hsm2 option=customer-triggered step=migrate \
  state="$S" hsm1="$H1" hsm2="$H2" > out 2> err
rc=$?; cmd="migrate killed inside hsm2's 3rd C_UnwrapKey"; rc_is 137
check "the killed migration left the route in limited-write mode" grep -qx 'mode=limited-write' "$S"
HSMSH_ROUTE_STATE=$S pkcs11-tool --module "$ROUTE" --login --pin 1234 --keygen --key-type AES:32 \
  --label during --id 77 > /dev/null 2> kg.err
check "writes through the route are refused while migrating ($(show kg.err))" grep -q CKR_TOKEN_WRITE_PROTECTED kg.err
ct step=migrate hsm1="$H1" hsm2="$H2"
rc_is 0; has err "hsm2 serves every operation and takes every write"
check "after the migration: weights 0/100" grep -qx 'weights=0/100' "$S"
check "after the migration: write=green" grep -qx 'write=green' "$S"
check "after the migration: mode normal" grep -qx 'mode=normal' "$S"
check "hsm2 holds hsm1's keys, each once ($(diff <(secret_kcvs hsm1) <(secret_kcvs hsm2) | head -3 | tr '\n' ' '))" diff -q <(secret_kcvs hsm1) <(secret_kcvs hsm2)
HSMSH_ROUTE_STATE=$S pkcs11-tool --module "$ROUTE" --login --pin 1234 --keygen --key-type AES:32 \
  --extractable --label after --id 78 > /dev/null 2> kg.err || fail "a key made through the route after the migration ($(show kg.err))"
check "a key made after the migration lands on hsm2" grep -q '^after ' <(secret_kcvs hsm2)
ct step=rollback pin_source="file:$work/pin"
rc_is 0; has err "rolled back"
check "rolled back: the key made on hsm2 reached hsm1" grep -q '^after ' <(secret_kcvs hsm1)
ct step=canary pin_source="file:$work/pin"
rc_is 1; has err "option=customer-triggered has no step canary (its steps: migrate, rollback, status)"

# ---- customer managed
tokens m1 m2
keys_on m1 3
S=$work/m.state
cm() { h run cloudhsm/hsm1-to-hsm2 option=customer-managed state="$S" "$@"; }
cm step=migrate hsm1="$(uri m1)" hsm2="$(uri m2)"
rc_is 0
cm step=monitor watch=1 pin_source="file:$work/pin"
rc_is 0; has err "hsm2 over 1 s"
cm step=rollback pin_source="file:$work/pin"
rc_is 0
check "customer managed rollback: weights 100/0" grep -qx 'weights=100/0' "$S"
check "customer managed rollback: write=blue" grep -qx 'write=blue' "$S"
cm step=decommission pin_source="file:$work/pin"
rc_is 0; has err "green may now be switched off"

# ---- high availability into a FIPS hsm2: 3DES
tokens f1 f2
keys_on f1 2 3des
S=$work/f.state
ha() { h run cloudhsm/hsm1-to-hsm2 option=high-availability state="$S" "$@"; }
ha step=prepare hsm1="$(uri f1)" hsm2="$(uri f2)"
rc_is 1; has err "blue holds 1 3DES key(s): a backup of them cannot be restored onto a FIPS green"
check "the refused prepare made no route state" [ ! -e "$S" ]
ha step=prepare hsm1="$(uri f1)" hsm2="$(uri f2)" source=migrate
rc_is 0
secret_kcvs f1 > f1.kcv; secret_kcvs f2 > f2.kcv
check "the 3DES key stays on hsm1" grep -q '^des3 ' f1.kcv
check "and does not reach the FIPS hsm2" bash -c "! grep -q '^des3 ' f2.kcv"
ha step=parity pin_source="file:$work/pin"
rc_is 0; has err "cannot be on green; the route keeps serving them from blue"; has err "des3"
ha step=status --json pin_source="file:$work/pin"
check "status: one object blocked" python3 -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1])][-1]; sys.exit(s["objects"]["blocked"] != 1)' out

finish
