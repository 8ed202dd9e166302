#!/usr/bin/env bash
# hsm.wrap.kat on the real modules (issue 11 Deliver 2): NSS's CKM_AES_KEY_WRAP_KWP (0x210B)
# passes the RFC 5649 vectors while its CKM_AES_KEY_WRAP_PAD (0x210A, PKCS#7 padding + RFC
# 3394) fails them; SoftHSM2's 0x210A passes only 8-byte-aligned payloads; openCryptoki 3.8
# and tpm2-pkcs11 *lack* AES key wrap, which is said so, not "fails the known-answer test".
NAME=modules_kat
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
softhsm2-util --init-token --free --label kat --so-pin 12345678 --pin 1234 >/dev/null

kat() {  # kat URI MECH: prints ok|aligned_only|lacks|detail
  h -e "local w = require('hsm.wrap'); local s = require('hsm').token('$1')
        local r = w.kat(s, '$2')
        print(tostring(r.ok) .. '|' .. tostring(r.aligned_only) .. '|' .. tostring(r.lacks) .. '|' .. tostring(r.detail))"
  rc_is 0
}
kat "$NSS_URI" CKM_AES_KEY_WRAP_KWP;  has out "true|nil|nil|nil"
kat "$NSS_URI" CKM_AES_KEY_WRAP_PAD;  has out "false|nil|nil|CKM_AES_KEY_WRAP_PAD fails"
kat "$NSS_URI" CKM_AES_KEY_WRAP;      has out "true|nil|nil|nil"
kat "pkcs11:token=kat?module-path=$MODULE&pin-value=1234" CKM_AES_KEY_WRAP_PAD
has out "true|true|nil|CKM_AES_KEY_WRAP_PAD fails RFC 5649 6 (20 bytes)"
kat "$OCK_URI" CKM_AES_KEY_WRAP;      has out "false|nil|true|token $HSMSH_OCK_TOKEN lacks CKM_AES_KEY_WRAP (not in its mechanism list)"
kat "$OCK_URI" CKM_AES_KEY_WRAP_PAD;  has out "|true|token $HSMSH_OCK_TOKEN lacks CKM_AES_KEY_WRAP_PAD"
kat "$TPM2_URI" CKM_AES_KEY_WRAP_PAD; has out "false|nil|true|token $HSMSH_TPM2_TOKEN lacks CKM_AES_KEY_WRAP_PAD"

# The AES-KWP each side uses, per direction (wrap.kwp): 0x210B where listed and passing,
# else 0x210A where that passes; a token with neither is named.
kwp() {  # kwp URI FLAG: prints MECH|aligned_only, or nil|why
  h -e "local w = require('hsm.wrap'); local s = require('hsm').token('$1')
        local k, why = w.kwp(s, '$2')
        print(k and (k.mech .. '|' .. tostring(k.aligned_only)) or ('nil|' .. tostring(why)))"
  rc_is 0
}
kwp "$NSS_URI" CKF_WRAP;    has out "CKM_AES_KEY_WRAP_KWP|nil"
kwp "$NSS_URI" CKF_UNWRAP;  has out "CKM_AES_KEY_WRAP_KWP|nil"
kwp "pkcs11:token=kat?module-path=$MODULE&pin-value=1234" CKF_UNWRAP
has out "CKM_AES_KEY_WRAP_PAD|true"
kwp "$OCK_URI" CKF_WRAP;    has out "nil|token $HSMSH_OCK_TOKEN lacks AES-KWP (neither CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD)"
kwp "$TPM2_URI" CKF_UNWRAP; has out "nil|token $HSMSH_TPM2_TOKEN lacks AES-KWP"
finish
