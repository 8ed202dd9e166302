#!/usr/bin/env bash
# hsm.transport on the real modules (issue 11 Deliver 2): each side's mechanisms decide how
# keys travel; what cannot be names the side and the missing mechanism or flag, checked
# before anything is made on either token; nothing is left on either token.
NAME=modules_transport
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
softhsm2-util --init-token --free --label tsrc --so-pin 12345678 --pin 1234 >/dev/null
SRC="pkcs11:token=tsrc?module-path=$MODULE&pin-value=1234"

transport() {  # transport SRC_URI DST_URI KIND: prints the transport's name or error, and the
               # objects on both tokens before and after (it is closed when made)
  # Counted: this process's session objects and hsmsh-transport* token objects (the shared
  # openCryptoki token may gain others' objects meanwhile).
  h -e "local hsm = require('hsm'); local tr = require('hsm.transport')
        local src, dst = hsm.token('$1'), hsm.token('$2')
        local function ours(s)
          local n = 0
          for _, o in ipairs(assert(s:find_all({}))) do
            if o:get('CKA_TOKEN') == false or (o:get('CKA_LABEL') or ''):find('^hsmsh%-transport') then n = n + 1 end
          end
          return n
        end
        local before = ours(src) + ours(dst)
        local ok, t = pcall(tr.new, src, dst, {kind = '$3', kek = '$3' == 'aes-kwp' and 'k' or nil})
        print(ok and ('made ' .. t.name) or t)
        if ok then print('kind', t.kind); print('private', tostring(t.private)); print('unavailable', tostring(t.unavailable)); t.close() end
        print('objects', before, ours(src) + ours(dst))"
  rc_is 0
  if awk '/^objects/ { exit $2 == $3 ? 0 : 1 }' out; then pass; else fail "objects changed: $(show out)"; fi
}
# tpm2-pkcs11 lists RSA-OAEP without CKF_UNWRAP (and has no AES key wrap).
transport "$SRC" "$TPM2_URI" rsa-aes
has out "the destination token lists CKM_RSA_PKCS_OAEP without CKF_UNWRAP"
# openCryptoki 3.8 has OAEP both ways but no AES key wrap: no AES-KWP transport...
transport "$SRC" "$OCK_URI" aes-kwp
has out "aes-kwp: the destination token lacks AES-KWP (neither CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD)"
# ... but RSA-AES with AES-CBC per key (SoftHSM2 wraps with CKM_AES_CBC only), or
# AES-CBC-PAD where both sides have it (NSS and openCryptoki).
transport "$SRC" "$OCK_URI" rsa-aes
has out "made rsa-aes/oaep-sha1 (composed: one AES-256 key per run, CKM_AES_CBC per key)"
transport "$NSS_URI" "$OCK_URI" rsa-aes
has out "made rsa-aes/oaep-sha256 (composed: one AES-256 key per run, CKM_AES_CBC_PAD per key)"
# Both ways AES-KWP, each side its own: SoftHSM2's 0x210A, NSS's 0x210B.
transport "$SRC" "$NSS_URI" rsa-aes
has out "(composed: one AES-256 key per run, CKM_AES_KEY_WRAP_PAD / CKM_AES_KEY_WRAP_KWP per key)"

# transport=auto chooses by what both sides offer: RSA-OAEP for secret keys where nothing
# else is shared (openCryptoki wraps with AES-CBC-PAD, SoftHSM2 unwraps no AES-CBC; private
# keys blocked with the reason), nothing into tpm2-pkcs11 (no unwrap: every key blocked,
# public objects still copied). Closed, it leaves neither token with an object more.
transport "$OCK_URI" "$SRC" auto
has out "kind	rsa-oaep"
has out "private	no transport for private keys: the source token lacks AES-KWP (neither CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD), and no AES-CBC-PAD or AES-CBC the source wraps and the destination unwraps with"
transport "$SRC" "$TPM2_URI" auto
has out "kind	none"
has out "unavailable	no transport: needs CKM_RSA_AES_KEY_WRAP or CKM_RSA_PKCS_OAEP with CKF_WRAP on the source and CKF_UNWRAP on the destination: the destination token lists CKM_RSA_PKCS_OAEP without CKF_UNWRAP"
finish
