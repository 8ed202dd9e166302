#!/usr/bin/env bash
# bluegreen: seed 002's drill with generic/blue-green on real tokens, with real applications
# running through libhsmsh-route.so during every step: the multi-threaded libp11 application
# (tests/route/mt_app.c drill: 4 threads signing and decrypting with one RSA key found once)
# and pkcs11-tool making an extractable AES key through the module every ~0.3 s.
#   prepare (source=backup) -> parity -> canary 10 -> sync -> canary 50 -> write-switch -> sync
#   -> cutover -> rollback -> sync; then decommission.
# Afterwards: the application saw 0 failed operations; every key pkcs11-tool made is on both
# sides once, with the same check value on each (read through SoftHSM2 directly); green
# served operations during the canaries (the module's own statistics); status --json tells
# where the cutover stands (split mode, kills and faults: bluegreen_faults). Bad input: steps out of order, a state of another migration, a green that is blue,
# the replication key missing, decommission without its last backup or with an altered one.
set -u
NAME=bluegreen
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
APP=${HSMSH_ROUTE_MT_APP:?run through ctest}
# pkcs11-tool loads the plain module; the (instrumented, in a sanitizer build) application
# loads its own build of it
ROUTE=${HSMSH_ROUTE_LIB:?run through ctest} APP_ROUTE=${HSMSH_ROUTE_MT_LIB:?run through ctest}
for t in blue green; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
printf '1234' > pin
BLUE="pkcs11:token=blue?pin-source=file:$work/pin" GREEN="pkcs11:token=green?pin-source=file:$work/pin"
U=$BLUE "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
  assert(s:generate{type = "RSA", bits = 2048, label = "mt-rsa", id = "\1", CKA_EXTRACTABLE = true})
  assert(s:generate{type = "AES", bits = 256, label = "app-aes", id = "\2", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
  assert(s:generate{type = "EC", curve = "P-256", label = "app-ec", id = "\3", CKA_EXTRACTABLE = true})' \
  || fail "making blue's keys"
S=$work/route.state
export HSMSH_ROUTE_STATE=$S
step() {  # step NAME [PARAMS...]: one step of the cutover at $S; sets rc, out, err
  local s=$1; shift
  h run generic/blue-green step="$s" state="$S" pin_source="file:$work/pin" "$@"
}

# ---- bad input before anything exists
step parity
rc_is 1; has err "no blue/green cutover at $S: run step=prepare first"
h run generic/blue-green step=prepare state="$S" blue="$BLUE" green="pkcs11:token=blue?pin-source=file:$work/pin"
rc_is 1; has err "blue and green are the same token"
check "a refused prepare wrote no route state" [ ! -e "$S" ]

# ---- prepare: green from a fresh backup of blue
t0=$SECONDS
h run generic/blue-green step=prepare state="$S" blue="$BLUE" green="$GREEN" source=backup
rc_is 0; has err "backed up blue"; has err "green: 5 made"
echo "prepare: $((SECONDS - t0)) s"
check "the route state exists, 100/0, write=blue" grep -qx 'weights=100/0' "$S"
check "the last backup is kept" [ -s "$S.backup" ]
h run generic/blue-green step=prepare state="$S" blue="$BLUE" green="$GREEN"
rc_is 0; has err "is there and verifies (kept)"; has err "green: 0 made, 5 already there"

step write-switch
rc_is 1; has err "parity has not been shown"
step canary weight=10 watch=1
rc_is 1; has err "parity has not been shown; run step=parity first"
step cutover
rc_is 1; has err "the write side is still blue; run step=write-switch first"

# ---- the applications start
rm -f stop stop-keys
"$APP" "$APP_ROUTE" "$S" "$HSMSH" 1234 drill "$work/stop" > app.out 2> app.err & app=$!
( n=0
  while [ ! -e stop-keys ]; do
    n=$((n + 1))
    if pkcs11-tool --module "$ROUTE" --login --pin 1234 --keygen --key-type AES:32 --extractable \
         --label "drill-$n" --id "$(printf '7d%04x' $n)" > /dev/null 2>> keygen.err; then
      echo "drill-$n" >> made.labels
    else echo "drill-$n failed" >> keygen.failed; fi
    sleep 0.3
  done ) & keygen=$!
sleep 1

run_step() {  # run_step NAME [PARAMS...]: the step must succeed
  local t=$SECONDS
  step "$@"
  cmd="step $*"; rc_is 0
  echo "$*: $((SECONDS - t)) s ($(tail -1 err))"
}
run_step parity
step write-switch
cmd="write-switch before any sync"; rc_is 1; has err "no sync has run yet; run step=sync first"
run_step canary weight=10 watch=3
run_step sync
run_step canary weight=50 watch=3
g50=$(grep -E '^green ' out | awk '{ print $2 }')
check "green served operations at weight 50 (the canary's table: $(show out))" [ "${g50:-0}" -gt 0 ]
run_step write-switch
check "the route state's write side is green" grep -qx 'write=green' "$S"
run_step sync
run_step cutover
check "cut over: weights 0/100" grep -qx 'weights=0/100' "$S"
sleep 1
run_step rollback
check "rolled back: weights 100/0, write=blue" grep -qx 'weights=100/0' "$S"
touch stop-keys; wait $keygen
run_step sync
touch stop; wait $app
app_rc=$?
cmd="the drill application"
check "the application ran to the end and saw no failure ($(cat app.out) $(show app.err))" [ $app_rc = 0 ]
ops=$(awk '/^drill/ { print $3 }' app.out)
check "the application made operations during the drill ($ops)" [ "${ops:-0}" -gt 1000 ]
made=$(wc -l < made.labels)
check "pkcs11-tool made keys through the module during every step ($made made; failures: $(cat keygen.failed 2> /dev/null | head -3 | tr '\n' ' '))" \
  [ "$made" -ge 10 -a ! -s keygen.failed ]
# (the replication key itself is proven the same by the sync's transport; SoftHSM2 records no
# check value for its unwrapped copy)
secret_kcvs blue > blue.kcv; secret_kcvs green > green.kcv
bad=0 missing=""
while read -r l; do
  nb=$(grep -c "^$l " blue.kcv); ng=$(grep -c "^$l " green.kcv)
  kb=$(grep "^$l " blue.kcv | awk '{ print $2 }'); kg=$(grep "^$l " green.kcv | awk '{ print $2 }')
  if [ "$nb" != 1 ] || [ "$ng" != 1 ] || [ "$kb" != "$kg" ] || [ "$kb" = nil ]; then
    bad=$((bad + 1)); missing="$missing $l(blue $nb $kb, green $ng $kg)"
  fi
done < made.labels
check "every key the application made is on both sides once, with the same KCV ($bad bad:$missing)" [ $bad = 0 ]
check "blue and green hold the same secret keys ($(diff blue.kcv green.kcv | head -3 | tr '\n' ' '))" diff -q blue.kcv green.kcv
h route status "$S" --json
check "the route's statistics show both sides served" \
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["sides"]; sys.exit(not (s["blue"]["ops"] > 0 and s["green"]["ops"] > 0))' out

step status --json
rc_is 0
check "status --json: one status line saying where the cutover stands ($(show out))" python3 - out <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
st = [e for e in s if e.get("event") == "bluegreen_status"][0]
ok = (st["last_step"] == "sync" and st["weights"] == "100/0" and st["write"] == "blue"
      and st["objects"]["blue_only"] == 0 and st["objects"]["green_only"] == 0
      and st["conflicts"] == 0 and st["pending_births"] == 0 and st["route"]["green"]["ops"] > 0)
sys.exit(0 if ok else 1)
PY
mv "$S.backup" backup.kept
step decommission
cmd="decommission without the last backup"; rc_is 1; has err "the last backup of blue $S.backup is missing"
cp backup.kept "$S.backup"
printf '\x01' | dd of="$S.backup" bs=1 seek=$(( $(stat -c %s "$S.backup") - 60 )) conv=notrunc 2> /dev/null
step decommission
cmd="decommission with an altered last backup"; rc_is 1; has err "archive $S.backup: "
check "the refused decommissions did not finish the cutover" bash -c "! grep -q '\"finished\"' '$S.bluegreen'"
cp backup.kept "$S.backup"
run_step decommission
has err "green may now be switched off"

# ---- bad input on a prepared cutover
cp "$S" other.state
sed -i 's/^green=.*/green=pkcs11:token=other/' other.state
cp "$S.bluegreen" other.state.bluegreen
h run generic/blue-green step=sync state="$work/other.state" pin_source="file:$work/pin"
rc_is 1; has err "the state of another migration"
step canary weight=120
rc_is 1; has err "parameter weight must be between 0 and 100"
step canary max_error_rate=abc
rc_is 1; has err "max_error_rate=abc: give a fraction between 0 and 1"
kek=$(python3 -c 'import json,sys; print("hsmsh-bluegreen-" + json.load(open(sys.argv[1]))["id"])' "$S.bluegreen")
pkcs11-tool --module "$MODULE" --token-label green --login --pin 1234 --delete-object --type secrkey --label "$kek" > /dev/null 2>&1
step sync
rc_is 1; has err "the replication key $kek is missing on green"
cmd="after the refusals"; check "blue and green still hold the same keys" diff -q <(secret_kcvs blue) <(secret_kcvs green)

finish
