#!/usr/bin/env bash
# bluegreen_faults: generic/blue-green under the conditions operators meet, on real tokens.
# Green is reached through the fault-injecting module (tests/fault/libfaultp11.so wrapping
# SoftHSM2), so faults and kills can be put inside green's calls.
#  0. parity finds a twin whose attributes differ (CKA_DECRYPT changed on green);
#  1. kill -9 inside prepare (source=migrate, at green's 2nd C_UnwrapKey) and inside a sync
#     (at green's 1st C_UnwrapKey): the step run again finishes; every key once on each side,
#     with the same check value;
#  2. a canary whose green answers CKR_DEVICE_ERROR to every C_SignInit/C_DecryptInit in the
#     application: the step puts green's weight back to 0 by itself, says why, exits 1, and
#     the application saw no failed operation (the route retried those on blue);
#  3. deletions and changes: a dry-run sync changes nothing; a key destroyed through the
#     route is destroyed on the other side by the next sync, a CKA_ID changed through it is
#     changed there; a key whose ID was changed behind the route's back is not copied twice (its check value proves the twin); a key destroyed behind the route's back is not
#     taken as deleted: the sync copies it back;
#  4. split-brain: the same class, ID and label holding different keys on the two sides stops
#     the sync, naming it, with nothing changed;
#  5. kill -9 inside write-switch, cutover and rollback (inside their syncs, after the weights
#     moved) and during a canary's watch (the state then carries a deadline after which the
#     module falls back by itself): each run again, keys and route state agree;
#  6. split mode: after cutover, keys born on green and a rollback with blue_capacity too small
#     for them: the rollback ends in split mode listing them, the route serves them from green
#     (pkcs11-tool signs through the module, openssl verifies with green's public key), and
#     decommission refuses.
set -u
NAME=bluegreen_faults
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
APP=${HSMSH_ROUTE_MT_APP:?run through ctest}
# pkcs11-tool loads the plain module; the (instrumented, in a sanitizer build) application
# loads its own build of it
ROUTE=${HSMSH_ROUTE_LIB:?run through ctest} APP_ROUTE=${HSMSH_ROUTE_MT_LIB:?run through ctest}
if [ -z "$FLIB" ] || [ ! -f "$FLIB" ]; then fail "HSMSH_FAULT_LIB is not the built libfaultp11.so"; finish; fi
unset HSMSH_FAULT
export HSMSH_FAULT_MODULE=$MODULE
for t in blue green; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
printf '1234' > pin
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
GREEN="pkcs11:token=green?module-path=$FLIB&pin-source=file:$work/pin"
U=$BLUE "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
  assert(s:generate{type = "RSA", bits = 2048, label = "mt-rsa", id = "\1", CKA_EXTRACTABLE = true})
  for i = 1, 6 do
    assert(s:generate{type = "AES", bits = 256, label = "k" .. i, id = string.char(0x10 + i),
                      CKA_EXTRACTABLE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})
  end' || fail "making blue's keys"
S=$work/route.state
export HSMSH_ROUTE_STATE=$S
step() { local s=$1; shift; h run generic/blue-green step="$s" state="$S" pin_source="file:$work/pin" "$@"; }
same_keys() {  # same_keys WHAT: blue and green hold the same secret keys, each once
  secret_kcvs blue > b.kcv; secret_kcvs green > g.kcv
  check "$1: blue and green hold the same keys, each once ($(diff b.kcv g.kcv | head -4 | tr '\n' ' '))" \
    bash -c 'diff -q b.kcv g.kcv > /dev/null && [ -z "$(cut -d" " -f1 b.kcv | uniq -d)" ] && ! grep -q " nil$" b.kcv'
}
routed() { pkcs11-tool --module "$ROUTE" --login --pin 1234 "$@"; }
lacks_key() { ! grep -q "^$1 " "$2"; }

# ---- 1. kill -9 inside prepare and inside a sync; the step run again
HSMSH_FAULT="kill:C_UnwrapKey:2" "$HSMSH" run generic/blue-green step=prepare state="$S" blue="$BLUE" \
  green="$GREEN" source=migrate > out 2> err
rc=$?; cmd="prepare killed at green's 2nd C_UnwrapKey"; rc_is 137
h run generic/blue-green step=prepare state="$S" blue="$BLUE" green="$GREEN" source=migrate
rc_is 0
same_keys "prepare killed and run again"
step parity
rc_is 0
setattr() {  # setattr TOKEN LABEL true|false: CKA_DECRYPT of that secret key, behind the route's back
  U="pkcs11:token=$1?pin-source=file:$work/pin" L=$2 V=$3 "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
    assert(s:find({label = os.getenv("L"), class = "CKO_SECRET_KEY"}):set{CKA_DECRYPT = os.getenv("V") == "true"})'
}
setattr green k2 false
step parity
rc_is 1; has err "1 differ in their attributes"; has err "k2"; has err "CKA_DECRYPT"
setattr green k2 true
step parity
rc_is 0
for i in 1 2 3; do routed --keygen --key-type AES:32 --extractable --label "r$i" --id "7$i" > /dev/null 2>&1 || fail "keygen r$i"; done
HSMSH_FAULT="kill:C_UnwrapKey:1" "$HSMSH" run generic/blue-green step=sync state="$S" \
  pin_source="file:$work/pin" > out 2> err
rc=$?; cmd="sync killed at green's 1st C_UnwrapKey"; rc_is 137
step sync
rc_is 0; has err "sync (both)"
same_keys "sync killed and run again"
grep -c '"op":"C_GenerateKey"' "$S.births" > n.births
check "the three keys made through the route are in the birth journal ($(cat n.births))" [ "$(cat n.births)" = 3 ]

# ---- 2. a failing green during a canary
rm -f stop
HSMSH_FAULT="C_SignInit:*:CKR_DEVICE_ERROR;C_DecryptInit:*:CKR_DEVICE_ERROR" \
  "$APP" "$APP_ROUTE" "$S" "$HSMSH" 1234 drill "$work/stop" > app.out 2> app.err & app=$!
sleep 1
step canary weight=50 watch=5
rc_is 1; has err "green's weight is back to 0"
check "the canary says why ($(show err))" grep -qE "green is down|green's error rate" err
check "the route state is back at 100/0" grep -qx 'weights=100/0' "$S"
touch stop; wait $app; app_rc=$?
check "the application saw no failed operation ($(cat app.out) $(show app.err))" [ $app_rc = 0 ]
"$HSMSH" run generic/blue-green step=canary weight=30 watch=30 state="$S" pin_source="file:$work/pin" \
  > /dev/null 2>&1 & canary=$!
for _ in $(seq 1 50); do grep -qx 'weights=70/30' "$S" && break; sleep 0.1; done
kill -9 $canary; wait $canary 2> /dev/null
check "a canary killed while watching leaves its weight (70/30)" grep -qx 'weights=70/30' "$S"
# ... only until its watch should have ended: then the module falls back by itself
# (route.sh shows a live application moving at that time).
until=$(sed -n 's/^weights-until=//p' "$S") now=$(date +%s)
check "with a deadline: its watch's end and 10 s ($((until - now)) s from now)" \
  [ -n "$until" ] && [ $((until - now)) -gt 25 ] && [ $((until - now)) -le 41 ]
check "and 100/0 after it" grep -qx 'weights-after=100/0' "$S"
h route status "$S"; rc_is 0; has out "weights 70/30 until "
step canary weight=0 watch=1
rc_is 0
check "the canary run again sets the weights it is given" grep -qx 'weights=100/0' "$S"
check "a canary that held leaves no deadline" bash -c "! grep -q '^weights-until=' '$S'"
step status --json
check "status: the canary fell back (last step canary, weights 100/0)" \
  python3 -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1])][-1]; sys.exit(not (s["last_step"] == "canary" and s["weights"] == "100/0"))' out

# ---- 3. deletions
routed --delete-object --type secrkey --label r1 > /dev/null 2>&1 || fail "deleting r1 through the route"
secret_kcvs blue > b.kcv; secret_kcvs green > g.kcv
check "r1 is gone from blue (the write side)" lacks_key r1 b.kcv
check "r1 is still on green before the sync" grep -q '^r1 ' g.kcv
pkcs11-tool --module "$MODULE" --token-label green --login --pin 1234 --delete-object --type secrkey --label k6 > /dev/null 2>&1 \
  || fail "deleting k6 behind the route's back"
routed --set-id 7f --id 72 --type secrkey > /dev/null 2>&1 || fail "changing r2's CKA_ID through the route"
check "the birth journal records the identity before the change" grep -q '"op":"C_SetAttributeValue".*"id":"7f".*"was_id":"72"' "$S.births"
pkcs11-tool --module "$MODULE" --token-label blue --login --pin 1234 --set-id 5f --id 15 --type secrkey > /dev/null 2>&1 \
  || fail "changing k5's CKA_ID behind the route's back"
step sync --dry-run
rc_is 0; has err "would replicate"
secret_kcvs green > g.kcv
check "a dry-run sync deletes nothing (r1 still on green)" grep -q '^r1 ' g.kcv
check "and copies nothing (k6 still missing on green)" lacks_key k6 g.kcv
step sync
rc_is 0; has err "1 deleted, 1 changed"
has err "holds this key already as secret-key/15/k5"
secret_kcvs green > g.kcv
check "the deletion through the route reached green" lacks_key r1 g.kcv
check "k6, deleted on green behind the route's back, is copied back, not taken as deleted" grep -q '^k6 ' g.kcv
same_keys "after the deletions and changes"
ids() { pkcs11-tool --module "$MODULE" --token-label "$1" --login --pin 1234 -O --type secrkey 2> /dev/null \
  | awk '/label:/ { l = $2 } /ID:/ { print l, $2 }' | sort; }
ids green > g.ids
check "the change of r2's CKA_ID through the route reached green" grep -qx 'r2 7f' g.ids
check "k5, renamed behind the route's back, was not copied a second time" [ "$(grep -c '^k5 ' g.ids)" = 1 ]

# ---- 4. split-brain
for t in blue green; do
  pkcs11-tool --module "$MODULE" --token-label $t --login --pin 1234 --keygen --key-type AES:32 \
    --extractable --label twin --id 99 > /dev/null 2>&1 || fail "making twin on $t"
done
secret_kcvs blue > before.b; secret_kcvs green > before.g
step sync
rc_is 1; has err "split-brain"; has err "twin"
check "the refused sync changed nothing on blue" diff -q before.b <(secret_kcvs blue)
check "the refused sync changed nothing on green" diff -q before.g <(secret_kcvs green)
for t in blue green; do
  pkcs11-tool --module "$MODULE" --token-label $t --login --pin 1234 --delete-object --type secrkey --label twin > /dev/null 2>&1
done

# ---- 5. kill -9 inside write-switch (its sync to green) and inside cutover (its sync back
# from green, after the weights moved): the step run again; the route state and the keys agree
for i in 1 2; do routed --keygen --key-type AES:32 --extractable --label "w$i" --id "9$i" > /dev/null 2>&1 || fail "keygen w$i"; done
HSMSH_FAULT="kill:C_UnwrapKey:1" "$HSMSH" run generic/blue-green step=write-switch state="$S" \
  pin_source="file:$work/pin" > out 2> err
rc=$?; cmd="write-switch killed at green's 1st C_UnwrapKey"; rc_is 137
check "the killed write-switch left blue the write side" grep -qx 'write=blue' "$S"
step write-switch
rc_is 0
check "the write-switch run again made green the write side" grep -qx 'write=green' "$S"
same_keys "write-switch killed and run again"
for i in 3 4; do routed --keygen --key-type AES:32 --extractable --label "w$i" --id "9$i" > /dev/null 2>&1 || fail "keygen w$i"; done
HSMSH_FAULT="kill:C_WrapKey:1" "$HSMSH" run generic/blue-green step=cutover state="$S" \
  pin_source="file:$work/pin" > out 2> err
rc=$?; cmd="cutover killed at green's 1st C_WrapKey"; rc_is 137
check "the killed cutover had moved the weights (0/100)" grep -qx 'weights=0/100' "$S"
step status --json
check "status after the killed cutover: last step write-switch, green keys pending" \
  python3 -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1])][-1]; sys.exit(not (s["last_step"] == "write-switch" and s["objects"]["pending"] == 2))' out
step cutover
rc_is 0
same_keys "cutover killed and run again"

# ---- 6. split mode
for i in 1 2 3; do
  routed --keypairgen --key-type EC:prime256v1 --extractable --usage-sign --label "g$i" --id "8$i" > /dev/null 2>&1 || fail "keygen g$i"
done
privs() {  # labels of the private keys on token $1
  pkcs11-tool --module "$MODULE" --token-label "$1" --login --pin 1234 -O --type privkey 2> /dev/null \
    | sed -n 's/^ *label: *//p' | sort
}
privs blue > b.priv; privs green > g.priv
check "the key pairs made after cutover are on green" grep -qx g3 g.priv
check "and not on blue" bash -c '! grep -qx g1 b.priv'
nblue=$(U="$BLUE" "$HSMSH" -e 'local n = 0
  for _, o in ipairs(assert(require("hsm").token(os.getenv("U")):objects())) do
    if o.class == "CKO_SECRET_KEY" or o.class == "CKO_PRIVATE_KEY" then n = n + 1 end
  end
  print(n)')
HSMSH_FAULT="kill:C_WrapKey:1" "$HSMSH" run generic/blue-green step=rollback state="$S" \
  pin_source="file:$work/pin" blue_capacity=$((nblue + 1)) > out 2> err
rc=$?; cmd="rollback killed at green's 1st C_WrapKey"; rc_is 137
check "the killed rollback had pointed the route back at blue" grep -qx 'weights=100/0' "$S"
step rollback blue_capacity=$((nblue + 1))
rc_is 0; has err "split mode: 2 key(s) born on green cannot be on blue"
check "rolled back to 100/0" grep -qx 'weights=100/0' "$S"
check "rolled back to write=blue" grep -qx 'write=blue' "$S"
step status --json
check "status: split 2" python3 -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1])][-1]; sys.exit(s["split"] != 2)' out
privs blue > b.priv
split_key=$(comm -13 b.priv g.priv | head -1)
check "a private key stays on green only ($split_key)" [ -n "$split_key" ]
id=$(printf '%s' "$split_key" | sed 's/^g/8/')
printf 'split mode still signs' | openssl dgst -sha256 -binary > hash
routed --sign --mechanism ECDSA --signature-format openssl --id "$id" --input-file hash \
  --output-file sig > /dev/null 2> sign.err
pkcs11-tool --module "$MODULE" --token-label green --read-object --type pubkey --id "$id" \
  --output-file pub.der > /dev/null 2>&1
openssl pkey -pubin -inform DER -in pub.der -out pub.pem 2> /dev/null
check "pkcs11-tool signs through the route with $split_key, served from green, and openssl verifies it ($(show sign.err))" \
  openssl pkeyutl -verify -pubin -inkey pub.pem -in hash -sigfile sig
step decommission
rc_is 1; has err "in split mode"

finish
