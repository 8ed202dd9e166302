#!/usr/bin/env bash
# Quirk profiles (hsm.profiles, issue 11 Deliver 4) on the real modules: each module gets its
# profile by its token (also behind p11-kit-proxy), and every entry of that profile is
# measured on the module (tests/modules/profiles_check.lua): an entry removed or wrong fails.
NAME=modules_profiles
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
check_lua=$here/../modules/profiles_check.lua

softhsm2-util --init-token --free --label prof --so-pin 12345678 --pin 1234 >/dev/null
SOFT_URI="pkcs11:token=prof?module-path=$MODULE&pin-value=1234"
PROXY_SOFT_URI="pkcs11:token=prof?module-path=$HSMSH_P11KIT_PROXY&pin-value=1234"

# A certificate for the certificate-template probes (serial below 0x80: one byte, no sign pad).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/probe.key" -subj /CN=hsmsh-profile-probe \
  -set_serial 66 -days 2 -outform DER -out "$work/probe.der" 2>/dev/null || { echo "FAIL: openssl req"; exit 1; }

profile() {  # profile URI EXPECTED
  h "$check_lua" "$1" "$2" "$work/probe.der"
  if [ "$rc" -eq 0 ]; then pass; else fail "$2 on $1: $(grep FAIL out | tr '\n' '|') $(show err)"; fi
}
profile "$SOFT_URI" softhsm2
profile "$NSS_URI" nss
profile "$OCK_URI" opencryptoki
profile "$TPM2_URI" tpm2
# Behind p11-kit-proxy (C_GetInfo says "PKCS#11 Kit"): the same profiles, from the token.
profile "$PROXY_SOFT_URI" softhsm2
profile "$PROXY_NSS_URI" nss
profile "pkcs11:token=$HSMSH_TPM2_TOKEN?module-path=$HSMSH_P11KIT_PROXY&pin-value=$HSMSH_TPM2_PIN" tpm2

# Each profile's CKR codes are real: a profile with a wrong entry is caught (self-test of the
# checker on a copy of the NSS profile that forgets CKA_DESTROYABLE).
h -e "local p = require('hsm.profiles'); for _, x in ipairs(p.PROFILES) do
        if x.name == 'nss' then x.unsupported.CKA_DESTROYABLE = nil end end
      arg = {[0] = 'x', '$NSS_URI', 'nss', '$work/probe.der'}; dofile('$check_lua')"
rc_is 1; has out "FAIL: CKA_DESTROYABLE=true in a key template: C_GenerateKey: CKR_GENERAL_ERROR (profile: supported)"

finish
