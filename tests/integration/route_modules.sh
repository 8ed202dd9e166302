#!/usr/bin/env bash
# The routing module across two different PKCS#11 implementations (issue 12 with issue 11):
# blue is SoftHSM2, green is NSS softokn (its own database, loaded with x-init-reserved from
# the state's URI). pkcs11-tool through libhsmsh-route.so sees the union once, encrypts on
# green (0/100) what it then decrypts on blue (100/0), and a key generated with write=green
# lands on NSS and in the birth journal.
NAME=route_modules
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
ROUTE=${HSMSH_ROUTE_LIB:?HSMSH_ROUTE_LIB is not set (run through ctest)}
PIN=12345678                                   # one PIN: the module logs in to both sides

# green: an NSS database of this run, with the same PIN
mkdir "$work/nss" && printf '%s\n' "$PIN" > "$work/nsspw"
certutil -N -d "sql:$work/nss" -f "$work/nsspw" || { echo "FAIL: certutil -N"; exit 1; }
INIT_Q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' \
  "configdir='sql:$work/nss' certPrefix='' keyPrefix='' secmod='secmod.db' flags=")
GREEN="pkcs11:token=NSS%20Certificate%20DB?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$INIT_Q"
# blue: a SoftHSM2 token of this run, an AES key, migrated to green (the twins)
softhsm2-util --init-token --free --label rblue --pin "$PIN" --so-pin 87654321 > /dev/null
BLUE="pkcs11:token=rblue?module-path=$MODULE"
h -e "assert(require('hsm').token('$BLUE&pin-value=$PIN'):generate{type = 'AES', bits = 256,
        label = 'r-aes', id = '\1', CKA_EXTRACTABLE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})"
rc_is 0
h run generic/migrate from="$BLUE&pin-value=$PIN" to="$GREEN&pin-value=$PIN" filter=label=r-aes --yes; rc_is 0
has err "1 migrated"

S=$work/route.state
h route init "$S" blue="$BLUE" green="$GREEN"; rc_is 0
export HSMSH_ROUTE_STATE=$S
rt() { pkcs11-tool --module "$ROUTE" --login --pin "$PIN" "$@"; }
ops() { "$HSMSH" route status "$S" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['sides']['$1']['$2'])"; }

rt --list-objects > list.out 2>&1
n=$(grep -c "label: *r-aes$" list.out)
check "the union lists the twin once ($n; $(show list.out))" [ "$n" = 1 ]

printf 'sixteen byte msg' > plain
IV=000102030405060708090a0b0c0d0e0f
h route set "$S" weights=0/100; rc_is 0
g0=$(ops green ops)
rt --encrypt --mechanism AES-CBC-PAD --iv "$IV" --id 01 -i plain -o cipher > enc.out 2>&1
check "encrypt through the module at 0/100 ($(show enc.out))" [ -s cipher ]
g1=$(ops green ops)
check "green (NSS) served it ($g0 -> $g1)" [ "$g1" -gt "$g0" ]
h route set "$S" weights=100/0; rc_is 0
b0=$(ops blue ops)
rt --decrypt --mechanism AES-CBC-PAD --iv "$IV" --id 01 -i cipher -o back > dec.out 2>&1
check "blue (SoftHSM2) decrypts what NSS encrypted ($(show dec.out))" cmp -s plain back
b1=$(ops blue ops)
check "blue served it ($b0 -> $b1)" [ "$b1" -gt "$b0" ]

h route set "$S" write=green; rc_is 0
rt --keygen --key-type AES:32 --label r-new --id 02 > gen.out 2>&1
check "keygen through the module ($(show gen.out))" grep -q "Key generated" gen.out
h run generic/inventory token="$GREEN&pin-value=$PIN" --json; rc_is 0
has out '"label":"r-new"'
h run generic/inventory token="$BLUE&pin-value=$PIN" --json; rc_is 0
lacks out '"label":"r-new"'
check "the birth journal has it, on green" grep -q '"side":"green","op":"C_GenerateKey".*"label":"r-new"' "$S.births"
finish
