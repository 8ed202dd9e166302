#!/usr/bin/env bash
# route: libhsmsh-route.so as unmodified applications see it (pkcs11-tool, and OpenSSL through
# libp11's engine), moved by the operator with `hsmsh route init|set|status` (issue 12):
#  - one slot, blue's label; the union of both tokens, each logical object once;
#  - a key on both sides (migrated by hsmsh) signs at 100/0 on blue and at 0/100 on green, the
#    per-side counters in `route status --json` prove which; a key on one side only still
#    signs, and the miss is counted; openssl verifies what the engine signed;
#  - a key generated through the module lands on the write side, and in the birth journal;
#    after `route set write=green` on green; in limited-write mode it is refused;
#  - a PIN one side refuses fails C_Login, the log names the side and never the PIN; a side
#    that is down takes no operations whatever the weights, and is counted;
#  - two `route set` at once both land, one generation each;
#  - bad state: `route init`/`set` refuse bad weights, PINs in URIs, unknown arguments, an
#    existing file; a missing or malformed state fails C_Initialize with a log line; a state
#    changed to garbage is ignored (the last good one kept, the log says why).
set -u
NAME=route
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
ROUTE=$(dirname "$HSMSH")/libhsmsh-route.so
ENGINE=$(find /usr/lib -name pkcs11.so -path '*engines-3*' 2> /dev/null | head -1)
check "the route module is built ($ROUTE)" [ -f "$ROUTE" ]
check "libp11's OpenSSL engine is installed (libengine-pkcs11-openssl)" [ -n "$ENGINE" ]
for t in blue green; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
printf '1234' > pin
B="pkcs11:token=blue?module-path=$MODULE"
G="pkcs11:token=green?module-path=$MODULE"
U="pkcs11:token=blue?pin-source=file:$work/pin" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U"))
  assert(s:generate{type = "EC", curve = "P-256", label = "both", id = "\1", CKA_EXTRACTABLE = true})
  assert(s:generate{type = "EC", curve = "P-256", label = "blue-only", id = "\2", CKA_EXTRACTABLE = false})' \
  || fail "making blue's keys"
h run generic/migrate from="pkcs11:token=blue?pin-source=file:$work/pin" to="pkcs11:token=green?pin-source=file:$work/pin" filter=label=both
rc_is 0
S=$work/route.state
export HSMSH_ROUTE_STATE=$S
rt() { pkcs11-tool --module "$ROUTE" "$@"; }
direct() { local tok=$1; shift; pkcs11-tool --module "$MODULE" --token-label "$tok" --login --pin 1234 "$@" 2> /dev/null; }
ops() {  # ops SIDE: the operations counted on SIDE over every process so far
  "$HSMSH" route status "$S" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['sides']['$1']['$2'])"
}

# ---- operator commands
h route init "$S" blue="$B" green="$G"
rc_is 0; has out "generation 1, weights 100/0, write blue, mode normal"
check "the state is readable by other users (mode $(stat -c %a "$S"))" [ "$(stat -c %a "$S")" = 644 ]
h route init "$S" blue="$B" green="$G"; rc_is 1; has err "already exists"
h route set "$S" weights=120/-5; rc_is 1; has err "weights=120/-5"
h route set "$S" weights=50/60; rc_is 1; has err "adding up to 100"
h route set "$S" colour=red; rc_is 2; has err "unknown argument 'colour='"
h route init "$work/other" blue="pkcs11:token=blue?pin-value=s3cret" green="$G"
rc_is 1; has err "carries a PIN"; lacks err "s3cret"
h route init "$work/other" blue="pkcs11:token=blue?module-path=/nope.so" green="$G"; rc_is 1; has err "/nope.so does not exist"
h route status "$work/none"; rc_is 1; has err "cannot read route state"
check "the state is unchanged by the refusals (generation 1)" grep -qx 'generation=1' "$S"

# Two operators at once: both changes are kept (STATE.lock), one generation each.
g0=$(sed -n 's/^generation=//p' "$S")
"$HSMSH" route set "$S" weights=60/40 > set1.out 2>&1 & q1=$!
"$HSMSH" route set "$S" mode=normal > set2.out 2>&1 & q2=$!
wait $q1; r1=$?; wait $q2; r2=$?
check "two route set at once both succeed ($r1 $r2: $(show set1.out) $(show set2.out))" [ "$r1$r2" = 00 ]
check "each raised the generation ($g0 -> $(sed -n 's/^generation=//p' "$S"))" grep -qx "generation=$((g0 + 2))" "$S"
check "the first change is kept" grep -qx 'weights=60/40' "$S"
h route set "$S" weights=100/0; rc_is 0

# ---- what the application sees
rt -L > slots.out 2>&1
check "one slot ($(show slots.out))" [ "$(grep -c '^Slot' slots.out)" = 1 ]
check "labelled blue" grep -q 'token label *: blue' slots.out
rt --login --pin 1234 -O > objs.out 2> objs.err
check "the union: 'both' listed once as a private key ($(show objs.out))" [ "$(grep -A3 '^Private Key' objs.out | grep -c 'label: *both')" = 1 ]
check "the union: 'blue-only' listed once" [ "$(grep -A3 '^Private Key' objs.out | grep -c 'label: *blue-only')" = 1 ]

# ---- weights move the operations
echo "data to sign" > msg.txt
sign() { rt --login --pin 1234 --sign --id "$1" -m ECDSA -i msg.txt -o "$2" > /dev/null 2>> sign.err; }
b0=$(ops blue ops); g0=$(ops green ops)
for i in 1 2 3; do sign 01 s$i.sig || fail "sign at 100/0 ($(show sign.err))"; done
b1=$(ops blue ops); g1=$(ops green ops)
# (a find runs on both sides, for the union; the signatures on the side the weights chose)
check "at 100/0 the signatures ran on blue (blue ops $b0 -> $b1, green $g0 -> $g1)" [ $((b1 - b0)) -ge $((g1 - g0 + 3)) ]
h route set "$S" weights=0/100; rc_is 0; has out "generation 5"
sleep 0.2
for i in 1 2 3; do sign 01 t$i.sig || fail "sign at 0/100 ($(show sign.err))"; done
b2=$(ops blue ops); g2=$(ops green ops)
check "at 0/100 they ran on green (blue ops $b1 -> $b2, green $g1 -> $g2)" [ $((g2 - g1)) -ge $((b2 - b1 + 3)) ]
m0=$(ops blue misses)
sign 02 only.sig || fail "sign with the blue-only key at 0/100 ($(show sign.err))"
check "a key on blue only still signs at 0/100 ($(stat -c %s only.sig 2>&1) bytes), counted as a miss ($(ops blue misses) > $m0)" \
  [ -s only.sig -a "$(ops blue misses)" -gt "$m0" ]

# OpenSSL through libp11's engine, with the module loaded by the engine
direct blue --read-object --type pubkey --id 01 -o both.der
openssl pkey -pubin -inform DER -in both.der -out both.pem 2> /dev/null || fail "exporting the public key"
cat > engine.cnf <<CNF
openssl_conf = init
[init]
engines = engines
[engines]
pkcs11 = pkcs11
[pkcs11]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $ROUTE
PIN = 1234
init = 0
CNF
for w in 100/0 0/100; do
  h route set "$S" weights=$w; rc_is 0; sleep 0.2
  side=$([ $w = 100/0 ] && echo blue || echo green)
  other=$([ $side = blue ] && echo green || echo blue)
  before=$(ops $side ops) obefore=$(ops $other ops)
  OPENSSL_CONF=engine.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "pkcs11:token=blue;object=both;type=private" \
    -out "ossl.$side.sig" msg.txt > ossl.out 2>&1 || fail "openssl sign through the engine at $w ($(show ossl.out))"
  check "openssl verifies the signature made at $w" openssl dgst -sha256 -verify both.pem -signature "ossl.$side.sig" msg.txt
  check "at $w openssl's signature ran on $side ($side $before -> $(ops $side ops), $other $obefore -> $(ops $other ops))" \
    [ $(( $(ops $side ops) - before )) -gt $(( $(ops $other ops) - obefore )) ]
done

# ---- writes go to the write side, and into the birth journal
rt --login --pin 1234 --keygen --key-type AES:32 --id 0a --label made-blue > gen.out 2>&1 || fail "keygen through the module ($(show gen.out))"
check "the key made at write=blue is on blue" grep -q 'made-blue' <(direct blue -O)
check "and not on green" bash -c "! grep -q made-blue <(pkcs11-tool --module '$MODULE' --token-label green --login --pin 1234 -O 2>/dev/null)"
check "the birth journal records it on blue" grep -q '"side":"blue","op":"C_GenerateKey","class":"CKO_SECRET_KEY","id":"0a","label":"made-blue"' "$S.births"
h route set "$S" write=green; rc_is 0; sleep 0.2
rt --login --pin 1234 --keygen --key-type AES:32 --id 0b --label made-green > gen.out 2>&1 || fail "keygen at write=green ($(show gen.out))"
check "the key made at write=green is on green" grep -q 'made-green' <(direct green -O)
check "the birth journal records it on green" grep -q '"side":"green","op":"C_GenerateKey","class":"CKO_SECRET_KEY","id":"0b","label":"made-green"' "$S.births"
lacks "$S.births" "1234"
h route set "$S" mode=limited-write; rc_is 0; sleep 0.2
r0=$(ops green refusals)
rt --login --pin 1234 --keygen --key-type AES:32 --id 0c --label refused > gen.out 2>&1
check "limited-write: keygen refused ($(show gen.out))" grep -q CKR_TOKEN_WRITE_PROTECTED gen.out
check "nothing made on either side" bash -c "! grep -q refused <(pkcs11-tool --module '$MODULE' --token-label green --login --pin 1234 -O 2>/dev/null; pkcs11-tool --module '$MODULE' --token-label blue --login --pin 1234 -O 2>/dev/null)"
check "the refusal is counted ($r0 -> $(ops green refusals))" [ "$(ops green refusals)" -gt "$r0" ]
h route status "$S"; rc_is 0; has out "generation 9, weights 0/100, write green, mode limited-write"; has out "SIDE"
has out "P99 µs"
p99=$("$HSMSH" route status "$S" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['sides']['blue']['latency_us']['p99'])" 2>/dev/null)
check "route status gives blue's p99 latency in µs ($p99)" [ "${p99:-0}" -gt 0 ]

# ---- weights-until: a live application falls back by itself when the deadline passes
# (what a canary whose watcher died leaves: weights 0/100 until T, then 100/0), with no
# change to the file.
timed() {  # timed UNTIL: the state at 0/100 until UNTIL, then 100/0, one generation higher
  python3 - "$S" "$1" <<'PY'
import re, sys
path, until = sys.argv[1], sys.argv[2]
t = open(path).read()
g = int(re.search(r"^generation=(\d+)$", t, re.M).group(1))
t = re.sub(r"^generation=\d+$", "generation=%d" % (g + 1), t, flags=re.M)
t = re.sub(r"^weights=.*$", "weights=0/100", t, flags=re.M)
t = re.sub(r"^(weights-until|weights-after)=.*\n", "", t, flags=re.M)
t = t.replace("\nend\n", "\nweights-until=%s\nweights-after=100/0\nend\n" % until)
open(path + ".new", "w").write(t)
PY
  mv "$S.new" "$S"
}
timed $(( $(date +%s) + 3 ))
h route status "$S"; rc_is 0; has out "weights 0/100 until "; has out ", then 100/0"
cat > timed.lua <<'LUA'
local hsm = require("hsm")
local s = hsm.token(("pkcs11:token=blue?module-path=%s&pin-value=1234"):format(arg[1]))
local key = assert(s:find_all{CKA_CLASS = "CKO_PRIVATE_KEY", CKA_LABEL = "both"})[1]
for i = 1, 5 do assert(s:sign("CKM_ECDSA", key, ("b"):rep(32)), "sign before the deadline") end
hsm.core.sleep(tonumber(arg[2]) - os.time() + 1.3)
for i = 1, 5 do assert(s:sign("CKM_ECDSA", key, ("a"):rep(32)), "sign after the deadline") end
print("signed before and after")
LUA
b0=$(ops blue ops); g0=$(ops green ops)
"$HSMSH" timed.lua "$ROUTE" "$(sed -n 's/^weights-until=//p' "$S")" > timed.out 2>&1
check "a live application signs before and after the deadline ($(show timed.out))" grep -q 'signed before and after' timed.out
b1=$(ops blue ops); g1=$(ops green ops)
check "before the deadline green signed, after it blue (blue ops $b0 -> $b1, green $g0 -> $g1)" \
  [ $((b1 - b0)) -ge 5 ] && [ $((g1 - g0)) -ge 5 ]
check "the log says the deadline passed ($(tail -1 "$S.log"))" grep -q 'weights-until .* has passed (the canary that set it is no longer watching?); weights now 100/0' "$S.log"
h route status "$S"; rc_is 0; has out "weights 100/0 (weights 0/100 held until "
rt --login --pin 1234 --sign --id 01 -m ECDSA -i msg.txt -o late.sig > /dev/null 2>&1
check "a process started after the deadline uses 100/0 at once ($b1 -> $(ops blue ops))" [ "$(ops blue ops)" -gt "$b1" ]
h route set "$S" weights=0/100; rc_is 0
check "route set weights= clears the deadline" bash -c "! grep -q '^weights-until=' '$S'"
sed -i 's/^end$/weights-until=soon\nweights-after=100\/0\nend/' "$S"
rt --login --pin 1234 -O > until.out 2>&1
check "a malformed weights-until fails C_Initialize ($(show until.out))" grep -q 'CKR_GENERAL_ERROR' until.out
check "and the log says why" grep -q "weights-until 'soon' is not a time" "$S.log"
h route status "$S"; rc_is 1; has err "weights-until=soon: give a time in seconds since 1970"
h route set "$S" weights=100/0; rc_is 1
sed -i '/^weights-until=/d; /^weights-after=/d' "$S"

# ---- bad state
good=$(cat "$S")
printf 'format=1\ngeneration=9\nweights=oops\n' > "$S"
rt --login --pin 1234 -O > bad.out 2>&1
check "a malformed state fails C_Initialize ($(show bad.out))" grep -q 'CKR_GENERAL_ERROR' bad.out
check "and the log says why" grep -q 'weights' "$S.log"
printf '%s\n' "$good" > "$S"
# A live application (hsmsh itself, loading the module) signs, the state turns to garbage,
# and it signs again on the last good state; the log says why the new one was ignored.
cat > live.lua <<'LUA'
local hsm = require("hsm")
local s = hsm.token(("pkcs11:token=blue?module-path=%s&pin-value=1234"):format(arg[1]))
local key = assert(s:find_all{CKA_CLASS = "CKO_PRIVATE_KEY", CKA_LABEL = "both"})[1]
assert(s:sign("CKM_ECDSA", key, ("x"):rep(32)), "sign before")
local f = assert(io.open(arg[2], "w")) f:write("format=1\ngeneration=99\nweights=garbage\n") f:close()
hsm.core.sleep(0.3)
assert(s:sign("CKM_ECDSA", key, ("y"):rep(32)), "sign after the garbage state")
print("signed twice")
LUA
"$HSMSH" live.lua "$ROUTE" "$S" > live.out 2>&1
check "a live application keeps working when the state turns to garbage ($(show live.out))" grep -q 'signed twice' live.out
check "the log says the new state was ignored ($(tail -1 "$S.log"))" grep -qi 'weights' <(tail -3 "$S.log")
printf '%s\n' "$good" > "$S"
# A PIN that one side refuses: C_Login fails, the log names that side and never the PIN.
softhsm2-util --init-token --free --label green2 --pin 98765432 --so-pin 12345678 > /dev/null
S2=$work/pin.state
"$HSMSH" route init "$S2" blue="$B" green="pkcs11:token=green2?module-path=$MODULE" > /dev/null || fail "route init $S2"
HSMSH_ROUTE_STATE=$S2 rt --login --pin 1234 -O > pin.out 2>&1
check "one side refuses the PIN: the login fails ($(show pin.out))" grep -q 'CKR_PIN_INCORRECT' pin.out
check "the log says green refused it ($(tail -1 "$S2.log"))" grep -q 'C_Login refused by green' "$S2.log"
check "the PIN is in no log, journal or statistics" bash -c "! grep -rq 1234 '$S2.log' '$S2.stats.d'"
# A side that is down (its token is gone): operations go to the other side, whatever the weights.
S3=$work/down.state
"$HSMSH" route init "$S3" blue="$B" green="pkcs11:token=nosuch?module-path=$MODULE" weights=0/100 > /dev/null || fail "route init $S3"
HSMSH_ROUTE_STATE=$S3 rt --login --pin 1234 --sign --id 01 -m ECDSA -i msg.txt -o down.sig > down.out 2>&1
check "green down at 0/100: the signature is made on blue ($(show down.out))" [ -s down.sig ]
check "the log says green is down ($(grep -m1 down "$S3.log"))" grep -q 'green: down at C_Initialize' "$S3.log"
d=$(HSMSH_ROUTE_STATE=$S3 "$HSMSH" route status "$S3" --json | python3 -c "import json,sys; s=json.load(sys.stdin)['sides']; print(s['green']['downs'], s['blue']['ops'])")
check "the down side is counted, the operations on blue ($d)" [ "${d% *}" -ge 1 -a "${d#* }" -ge 1 ]
HSMSH_ROUTE_STATE=$work/missing rt -L > miss.out 2>&1
check "a missing state fails C_Initialize ($(show miss.out))" grep -q 'CKR_GENERAL_ERROR' miss.out
finish
