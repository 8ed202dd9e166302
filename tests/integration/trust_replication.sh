#!/usr/bin/env bash
# trust_replication: seed 001 (owner CA, identities, trust) and seed 000's token replication
# through the recipes, first in one process, then as separate client machines (one SoftHSM2
# token directory each) exchanging only files. Two lab tokens get identities signed by a
# third acting as CA, openssl verifies the certificates and CSRs, trust is set both ways, a
# token image made for the second token imports there with every object (pkcs11-tool
# decrypts there what the source encrypted) and is refused by any other token; bad input
# (unconfirmed overwrite, PIC of another owner, tampered CSR and image, other PINs) changes
# nothing.
# Usage: bash trust_replication.sh /abs/path/to/hsmsh
set -u
NAME=trust_replication
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

printf '1234' > "$work/pin"
printf '12345678' > "$work/so"
SO="so_pin=file:$work/so"
uri() { printf 'pkcs11:token=%s?pin-source=file:%s/pin' "$1" "$work"; }
newtok() { softhsm2-util --init-token --free --label "$1" --pin "${2:-1234}" --so-pin "${3:-12345678}" > /dev/null; }
serial() { "$HSMSH" -e "local _, i = hsm.token('$(uri "$1")', {login = false}) print(i.serial)"; }
p11() {  # p11 TOKEN ARGS... (the current SOFTHSM2_CONF)
  local tok=$1; shift
  pkcs11-tool --module "$MODULE" --token-label "$tok" --login --pin 1234 "$@" 2> /dev/null
}
objects() { p11 "$1" --list-objects | grep -cE '^(Secret Key|Private Key|Public Key|Certificate) Object|^Data object'; }
verify() {  # verify CAFILE CERT: openssl accepts the chain
  if openssl verify -CAfile "$1" "$2" > ov.out 2>&1; then pass; else fail "openssl verify $2: $(cat ov.out)"; fi
}
# The seed's proof: what the source encrypts with key ID 0102, the destination decrypts.
printf 'attack at dawn!!' > "$work/pt"
encrypt_on() {
  p11 "$1" --encrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 \
    --input-file "$work/pt" --output-file "$work/ct"
}
decrypts_on() {
  rm -f "$work/back"
  p11 "$1" --decrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 \
    --input-file "$work/ct" --output-file "$work/back"
  check "pkcs11-tool on $1 decrypts what the source encrypted" cmp -s "$work/pt" "$work/back"
}

# ================================================================ one process (one client)
"$HSMSH" lab init > /dev/null 2>&1      # blue (with the lab's keys) and green
newtok ca; newtok other; newtok otherpin 9999; newtok otherso 1234 87654321
BLUE=$(uri blue) GREEN=$(uri green) CA=$(uri ca) OTHER=$(uri other)
S_BLUE=$(serial blue) S_GREEN=$(serial green) S_CA=$(serial ca) S_OTHER=$(serial other)
store=$work/store

h run protectserver/establish-ca ca="$CA" hsms="$BLUE,$GREEN" certs="$store"; rc_is 0
has err "step 1: POK and POC made on the CA (POC-pending)"
has err "step 2: 3 identities signed by the POK"
has out "owner-signed  CA"
for s in "$S_CA" "$S_BLUE" "$S_GREEN"; do verify "$store/Owner_POC.crt" "$store/HSM_$s.crt"; done
openssl x509 -in "$store/HSM_$S_BLUE.crt" -noout -text > x509.txt 2>&1
has x509.txt "ecdsa-with-SHA512"
has x509.txt "NIST CURVE: P-521"
has x509.txt "serialNumber = $S_BLUE"
cp "$store/Owner_POC.crt" poc.before
h run protectserver/establish-ca ca="$CA" certs="$store"; rc_is 1
has err "already has an owner key and POC; replace them? Every PIC it signed will stop verifying: not confirmed (use --yes in batch)"
one_line
check "an unconfirmed gen-owner keeps the POC" cmp -s poc.before "$store/Owner_POC.crt"

# other gets a self-signed identity: the CA's PICs do not chain to anything it stores
h run protectserver/self-signed-identity token="$OTHER" certs="$store"; rc_is 0
verify "$store/HSM_$S_OTHER.crt" "$store/HSM_$S_OTHER.crt"
h run protectserver/trust trusted="$BLUE" trusting="$OTHER" "$SO"; rc_is 1
has err "is signed by"
has err "whose POC this token does not store: store that owner's POC first (store-poc)"
h run protectserver/authenticate-online ca="$CA" hsms="$OTHER" certs="$store"; rc_is 1
has err "already has an identity (self-signed); replace it: not confirmed"
h run protectserver/authenticate-online ca="$CA" hsms="$OTHER" certs="$store" --yes; rc_is 0
verify "$store/Owner_POC.crt" "$store/HSM_$S_OTHER.crt"
h run protectserver/trust trusted="$BLUE" trusting="$OTHER" so_pin=file:"$work/pin"; rc_is 1
has err "cannot log in to token other: C_Login: CKR_PIN_INCORRECT"
h run protectserver/trust trusted="$BLUE" trusting="$OTHER" "$SO"; rc_is 0
has err "HSM $S_OTHER trusts HSM $S_BLUE"

# Token replication blue -> green, one process (the recipe sets trust both ways first)
encrypt_on blue
check "pkcs11-tool encrypted on blue" [ -s "$work/ct" ]
h run protectserver/token-replication from="$BLUE" to="$(uri otherpin)" "$SO"; rc_is 1
has err "the destination's user PIN is not the source's"
h run protectserver/token-replication from="$BLUE" to="$(uri otherso)" "$SO"; rc_is 1
has err "the destination's SO PIN is not the source's"
check "the refused replication wrote nothing on otherso" [ "$(objects otherso)" -eq 0 ]
h run protectserver/token-replication from="$BLUE" to="$GREEN" "$SO" image="$work/green.img"; rc_is 0
has err "step 1: HSM $S_BLUE trusts HSM $S_GREEN"
has err "step 1: HSM $S_GREEN trusts HSM $S_BLUE"
has err "step 2: image $work/green.img for HSM $S_GREEN"
has err "step 4: the destination matches the source"
has out "OBJECT (class/id/label)"
has out "secret-key/0102/aes-256"
lacks out "differ:"
has out "blocked: not extractable: no PKCS#11 call can export it, not even for token replication"
decrypts_on green
# the image was made for green: other (which trusts blue) refuses it and stays unchanged
n_other=$(objects other)
h run protectserver/token-replication side=destination to="$OTHER" image="$work/green.img" "$SO"; rc_is 1
has err "image $work/green.img: it was made for HSM $S_GREEN; this token is HSM $S_OTHER; nothing was written"
one_line
check "the refused image wrote nothing on other" [ "$(objects other)" -eq "$n_other" ]
h run protectserver/trust action=list; rc_is 0
row() { check "list shows: $*" grep -qE "^$(echo "$*" | sed 's/ / +/g')\$" out; }
row blue "$S_BLUE" owner-signed stored "$S_GREEN"
row ca "$S_CA" owner-signed CA -
row other "$S_OTHER" owner-signed stored "$S_BLUE"
row otherpin "$(serial otherpin)" none none -
row otherso "$(serial otherso)" none none -
# URIs listed in a string parameter lose their PIN in the journal too
h run protectserver/trust action=list trusting="pkcs11:token=blue?pin-value=1234,pkcs11:token=green?pin-value=1234" \
  --journal "$work/jl"; rc_is 0
has "$work/jl" '"trusting":"pkcs11:token=blue,pkcs11:token=green"'
lacks "$work/jl" "pin-value"
# a second run is idempotent: everything is already there
h run protectserver/token-replication from="$BLUE" to="$GREEN" "$SO" image="$work/green2.img"; rc_is 0
has err "0 failed"
has err "step 4: the destination matches the source"
# trust removed: green no longer accepts blue's images
h run protectserver/trust action=remove trusted="$S_BLUE" trusting="$GREEN" "$SO"; rc_is 0
has err "HSM $S_GREEN no longer trusts HSM $S_BLUE"
h run protectserver/token-replication side=destination to="$GREEN" image="$work/green2.img" "$SO"; rc_is 1
has err "its signer (HSM $S_BLUE) is not trusted"

# ================================================================ "all", as ctident takes it
client() {  # client NAME: a token directory of its own
  mkdir -p "$work/$1/tokens"
  printf 'directories.tokendir = %s/%s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" "$1" > "$work/$1/softhsm2.conf"
  export SOFTHSM2_CONF=$work/$1/softhsm2.conf
}
client D; newtok d1; newtok d2; newtok d3; newtok d4
h run protectserver/establish-ca ca="$(uri d1)" hsms=all certs="$work/dstore"; rc_is 0
has err "step 2: 4 identities signed by the POK"
for t in d1 d2 d3 d4; do verify "$work/dstore/Owner_POC.crt" "$work/dstore/HSM_$(serial $t).crt"; done
softhsm2-util --init-token --free --label dlate --pin 1234 --so-pin 12345678 > /dev/null
h run protectserver/trust trusted=all trusting=all "$SO"; rc_is 0
has err "has no identity: it trusts nobody"
has err "(token dlate) has no PIC: not trusted"
S_D1=$(serial d1) S_D2=$(serial d2) S_D3=$(serial d3)
h run protectserver/trust action=list trusting=all; rc_is 0
check "all all: d1 trusts the three others" grep -qE "^d1 +$S_D1 +owner-signed +CA +([0-9a-f]+,){2}[0-9a-f]+$" out
check "all all: d2 trusts d1" grep -qE "^d2 +$S_D2 .*$S_D1" out
check "all all: d3 trusts d2" grep -qE "^d3 +$S_D3 .*$S_D2" out

# ================================================================ split across three clients
# A: the offline CA; B: the source HSM; C: the destination HSM. Only files in $xfer travel.
xfer=$work/xfer
mkdir -p "$xfer"
client A; newtok ca2
h run protectserver/establish-ca ca="$(uri ca2)" certs="$xfer"; rc_is 0
client B; "$HSMSH" lab init > /dev/null 2>&1; S_PS2=$(serial blue)
h run protectserver/authenticate-offline side=request hsms="$(uri blue)" certs="$xfer"; rc_is 0
has out "PIK-pending"
client C; newtok ps3; S_PS3=$(serial ps3)
h run protectserver/authenticate-offline side=request hsms="$(uri ps3)" certs="$xfer"; rc_is 0
for s in "$S_PS2" "$S_PS3"; do
  if openssl req -in "$xfer/HSM_$s.csr" -verify -noout > req.out 2>&1 && grep -q "verify OK" req.out; then pass
  else fail "openssl req -verify HSM_$s.csr: $(cat req.out)"; fi
done
# A tampered CSR is refused and nothing is signed
mkdir -p "$work/badcsr"
openssl req -in "$xfer/HSM_$S_PS3.csr" -outform DER -out "$work/badcsr/x.der" 2> /dev/null
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-3]^=1; open(p,"wb").write(b)' "$work/badcsr/x.der"
mv "$work/badcsr/x.der" "$work/badcsr/HSM_$S_PS3.csr"
client A
h run protectserver/authenticate-offline side=sign ca="$(uri ca2)" certs="$work/badcsr"; rc_is 1
has err "the CSR's signature does not verify"
check "no certificate for a tampered CSR" [ ! -e "$work/badcsr/HSM_$S_PS3.crt" ]
h run protectserver/authenticate-offline side=sign ca="$(uri ca2)" certs="$xfer"; rc_is 0
for s in "$S_PS2" "$S_PS3"; do verify "$xfer/Owner_POC.crt" "$xfer/HSM_$s.crt"; done
client B
# a PIC from the first CA (another owner) does not chain to ca2's POC
cp "$xfer/HSM_$S_PS2.crt" keep.crt
cp "$store/HSM_$S_BLUE.crt" "$xfer/HSM_$S_PS2.crt"
h run protectserver/authenticate-offline side=store hsms="$(uri blue)" certs="$xfer"; rc_is 1
has err "the PIC"
cp keep.crt "$xfer/HSM_$S_PS2.crt"
h run protectserver/authenticate-offline side=store hsms="$(uri blue)" certs="$xfer"; rc_is 0
has out "owner-signed  stored"
client C
h run protectserver/authenticate-offline side=store hsms="$(uri ps3)" certs="$xfer"; rc_is 0
h run protectserver/trust action=export trusted="$(uri ps3)" certs="$work/fetched"; rc_is 0
check "fetch-certs: the stored PIC" cmp -s "$work/fetched/HSM_$S_PS3.crt" "$xfer/HSM_$S_PS3.crt"
check "fetch-certs: the owner's POC" cmp -s "$work/fetched/Owner_POC.crt" "$xfer/Owner_POC.crt"
# Mutual trust through the PIC files
h run protectserver/trust trusted="$xfer/HSM_$S_PS2.crt" trusting="$(uri ps3)" "$SO"; rc_is 0
client B
h run protectserver/trust trusted="$xfer/HSM_$S_PS3.crt" trusting="$(uri blue)" "$SO"; rc_is 0
encrypt_on blue
h run protectserver/token-replication side=source from="$(uri blue)" dest-cert="$xfer/HSM_$S_PS3.crt" image="$xfer/ps2.img" "$SO"; rc_is 0
has err "step 2: image $xfer/ps2.img for HSM $S_PS3"
client C
n_ps3=$(objects ps3)
cp "$xfer/ps2.img" bad.img
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0x10; open(p,"wb").write(b)' bad.img
h run protectserver/token-replication side=destination to="$(uri ps3)" image=bad.img "$SO"; rc_is 1
has err "image bad.img: "
has err "nothing was written"
check "a tampered image writes nothing" [ "$(objects ps3)" -eq "$n_ps3" ]
# killed -9 in the middle of the import (the 4th C_UnwrapKey), then resumed: nothing doubled
FPS3="pkcs11:token=ps3?module-path=${HSMSH_FAULT_LIB:?run through ctest}&pin-source=file:$work/pin"
HSMSH_FAULT="kill:C_UnwrapKey:4:after" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run protectserver/token-replication \
  side=destination to="$FPS3" image="$xfer/ps2.img" "$SO" --journal "$work/jr"
rc=$?; cmd="import killed at the 4th C_UnwrapKey"; rc_is 137
check "the kill left a partial import" [ "$(objects ps3)" -gt "$n_ps3" ]
h resume "$work/jr" --yes; rc_is 0
has err "step 3: imported"
has err "step 4: the destination matches the source"
has out "SOURCE KCV/FINGERPRINT"
n_after=$(objects ps3)
check "resumed: the lab's 23 carried objects and the image record, none doubled ($n_ps3 -> $n_after)" \
  [ "$n_after" -eq $((n_ps3 + 24)) ]
h run protectserver/token-replication side=destination to="$(uri ps3)" image="$xfer/ps2.img" "$SO" --json; rc_is 0
has out '"event":"compare"'
has out '"attributes":"same"'
lacks out '"attributes":"differ'
has out '"status":"skipped"'
decrypts_on ps3
finish
