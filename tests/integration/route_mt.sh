#!/usr/bin/env bash
# route_mt: a multi-threaded libp11 application (tests/route/mt_app.c: 4 threads, the key found
# once and kept, RSA sign and OAEP decrypt, a token key generated per phase) runs through
# libhsmsh-route.so while `hsmsh route set` moves the state 100/0 -> 90/10 -> 50/50 -> 0/100
# -> 100/0 and flips the write side, once in one process and once in a child forked after
# C_Initialize and login (libp11 initialises the module again in the child). Required in
# each phase: >= 2,000 operations, none failed, blue's share of the operations within 5
# points of its weight (from the module's own statistics); every key generated is on the
# write side of its phase, not on the other, and in the birth journal with that side.
set -u
NAME=route_mt
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
APP=${HSMSH_ROUTE_MT_APP:?run through ctest}
# (in a sanitizer build, the module's instrumented copy: the app is instrumented too)
ROUTE=${HSMSH_ROUTE_MT_LIB:?run through ctest}
for t in blue green; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
printf '1234' > pin
U="pkcs11:token=blue?pin-source=file:$work/pin" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
  assert(s:generate{type = "RSA", bits = 2048, label = "mt-rsa", id = "\1", CKA_EXTRACTABLE = true})' || fail "making the key"
h run generic/migrate from="pkcs11:token=blue?pin-source=file:$work/pin" to="pkcs11:token=green?pin-source=file:$work/pin"
rc_is 0
S=$work/route.state
export HSMSH_ROUTE_STATE=$S
h route init "$S" blue="pkcs11:token=blue?module-path=$MODULE" green="pkcs11:token=green?module-path=$MODULE"
rc_is 0
labels() { pkcs11-tool --module "$MODULE" --token-label "$1" --login --pin 1234 -O 2> /dev/null | sed -n 's/^ *label: *//p'; }

for mode in threads fork; do
  "$APP" "$ROUTE" "$S" "$HSMSH" 1234 2000 $([ $mode = fork ] && echo fork) > app.$mode.out 2> app.$mode.err
  rc=$?
  cmd="route_mt_app ($mode)"; rc_is 0
  check "$mode: 5 phases reported ($(show app.$mode.err))" [ "$(grep -c '^phase' app.$mode.out)" = 5 ]
  [ $mode = fork ] && check "fork: the child finished cleanly" grep -qx 'child exit 0' app.$mode.out
  labels blue > blue.labels; labels green > green.labels
  while read -r _ p _ w _ side _ ops _ b _ g _ share _ nfail _ key rest; do
    want=${w%/*}
    check "$mode phase $p ($w): >= 2000 operations ($ops)" [ "$ops" -ge 2000 ]
    check "$mode phase $p ($w): none failed ($nfail$rest)" [ "$nfail$rest" = 0 ]
    check "$mode phase $p ($w): blue's share $share% within 5 points of $want% (blue $b, green $g)" \
      awk -v s="$share" -v w="$want" 'BEGIN { d = s - w; exit !(d <= 5 && d >= -5) }'
    other=$([ "$side" = blue ] && echo green || echo blue)
    check "$mode phase $p: key $key is on the write side, $side (births: $(grep "\"$key\"" "$S.births" | grep -o '"side":"[a-z]*"' | tr '\n' ' '))" \
      grep -qx "$key" $side.labels
    check "$mode phase $p: key $key is not on $other" bash -c "! grep -qx '$key' $other.labels"
    check "$mode phase $p: the birth journal has $key's private key on $side" \
      grep -q "\"side\":\"$side\",\"op\":\"C_GenerateKeyPair\",\"class\":\"CKO_PRIVATE_KEY\",\"id\":\"7e0$p\",\"label\":\"$key\"" "$S.births"
  done < <(grep '^phase' app.$mode.out)
  cat app.$mode.out
done
finish
