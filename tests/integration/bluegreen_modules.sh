#!/usr/bin/env bash
# bluegreen_modules: generic/blue-green from one vendor to another, blue SoftHSM2 and green
# NSS softokn (a database of this run), with pkcs11-tool working through libhsmsh-route.so.
# NSS lacks what SoftHSM2 has (token data objects, an AES-KWP that agrees with SoftHSM2's
# for unaligned payloads), so the RSA and EC private keys cannot be on green: prepare and
# parity list them, the route serves them from blue at every weight (pkcs11-tool signs with
# the RSA key after the cutover, and openssl verifies with blue's public key), and
# decommissioning blue is refused while they exist only there. A key made through the route
# with write=green lands on NSS, and the sync carries it to SoftHSM2, proven by value; the
# rollback then ends with green decommissioned. (bluegreen.sh: the drill on SoftHSM2.)
set -u
NAME=bluegreen_modules
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
ROUTE=${HSMSH_ROUTE_LIB:?HSMSH_ROUTE_LIB is not set (run through ctest)}
PIN=12345678                                   # one PIN: the module logs in to both sides
printf '%s' "$PIN" > pin

mkdir nss && printf '%s\n' "$PIN" > nsspw
certutil -N -d "sql:$work/nss" -f nsspw || { echo "FAIL: certutil -N"; exit 1; }
INIT_Q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' \
  "configdir='sql:$work/nss' certPrefix='' keyPrefix='' secmod='secmod.db' flags=")
GREEN="pkcs11:token=NSS%20Certificate%20DB?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$INIT_Q"
softhsm2-util --init-token --free --label bgblue --pin "$PIN" --so-pin 87654321 > /dev/null
BLUE="pkcs11:token=bgblue?module-path=$MODULE"
h -e "local s = require('hsm').token('$BLUE&pin-value=$PIN')
  assert(s:generate{type = 'AES', bits = 256, label = 'app-aes', id = '\1', CKA_EXTRACTABLE = true,
                    CKA_ENCRYPT = true, CKA_DECRYPT = true})
  assert(s:generate{type = 'RSA', bits = 2048, label = 'app-rsa', id = '\2', CKA_EXTRACTABLE = true})
  assert(s:generate{type = 'EC', curve = 'P-256', label = 'app-ec', id = '\3', CKA_EXTRACTABLE = true})"
rc_is 0
S=$work/route.state
export HSMSH_ROUTE_STATE=$S
step() { local s=$1; shift; h run generic/blue-green step="$s" state="$S" pin_source="file:$work/pin" "$@"; }
rt() { pkcs11-tool --module "$ROUTE" --login --pin "$PIN" "$@"; }
ops() { "$HSMSH" route status "$S" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['sides']['$1']['ops'])"; }

# ---- prepare and parity: the private keys stay on blue, named
h run generic/blue-green step=prepare state="$S" blue="$BLUE&pin-source=file:$work/pin" \
  green="$GREEN&pin-source=file:$work/pin"
rc_is 0; has err "green: 3 made, 0 already there, 2 blocked"
step parity; rc_is 0
has err "2 object(s) cannot be on green; the route keeps serving them from blue"
has err "app-rsa"; has err "app-ec"; has err "SoftHSM2's CKM_AES_KEY_WRAP_PAD"

# ---- a canary while pkcs11-tool encrypts through the module
printf 'sixteen byte msg' > plain
IV=000102030405060708090a0b0c0d0e0f
g0=$(ops green)
( for i in $(seq 1 20); do
    rt --encrypt --mechanism AES-CBC-PAD --iv "$IV" --id 01 -i plain -o "c$i" > /dev/null 2>&1
    sleep 0.1
  done ) &
app=$!
step canary weight=50 watch=3; rc_is 0; has err "canary at weight 50 held"
wait "$app"
n=0; for f in c*; do [ -s "$f" ] && n=$((n + 1)); done
check "20 encryptions through the module during the canary ($n)" [ "$n" = 20 ]
check "green (NSS) served some of them ($g0 -> $(ops green))" [ "$(ops green)" -gt "$g0" ]
check "every ciphertext is the same (one key on both vendors)" [ "$(sha256sum c* | cut -c1-64 | sort -u | wc -l)" = 1 ]

# ---- write-switch, a key made through the module lands on NSS, the sync carries it back
step sync; rc_is 0
step write-switch; rc_is 0
rt --keygen --key-type AES:32 --extractable --label made-on-green --id 09 > gen.out 2>&1
check "keygen through the module ($(show gen.out))" grep -q "Key generated" gen.out
step sync; rc_is 0; has err "1 copied"
kcv_on() {  # kcv_on URI LABEL: the KCV of LABEL on that token, computed there
  U="$1&pin-value=$PIN" L=$2 "$HSMSH" -e 'local s = hsm.token(os.getenv("U"))
    print(require("hsm.keys").kcv(assert(s:find{CKA_LABEL = os.getenv("L")})))'
}
kg=$(kcv_on "$GREEN" made-on-green) kb=$(kcv_on "$BLUE" made-on-green)
check "the key made on NSS is on SoftHSM2 with its KCV ($kg, $kb)" [ -n "$kg" ] && [ "$kg" = "$kb" ]

# ---- cutover: green serves, the blue-only private key still signs
step cutover; rc_is 0
printf 'a message to sign' > msg
rt --sign --id 02 -m SHA256-RSA-PKCS -i msg -o sig > sign.out 2>&1
pkcs11-tool --module "$MODULE" --token-label bgblue --read-object --type pubkey --id 02 \
  --output-file rsa.der > /dev/null 2>&1
openssl pkey -pubin -inform DER -in rsa.der -out rsa.pem 2> /dev/null
check "after the cutover the blue-only RSA key signs through the module; openssl verifies ($(show sign.out))" \
  bash -c "openssl dgst -sha256 -verify rsa.pem -signature sig msg > /dev/null"
step decommission; rc_is 1
has err "2 object(s) cannot be on green and exist only on blue"

# ---- rollback, then green is the one switched off
step rollback; rc_is 0
step decommission; rc_is 0; has err "green may now be switched off"
step status --json; rc_is 0
has out '"finished":true'; has out '"blocked":2'
finish
