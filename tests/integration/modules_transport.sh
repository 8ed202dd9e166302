#!/usr/bin/env bash
# hsm.transport on the real modules (issue 11 Deliver 2): the RSA-AES transport names the
# side and the missing mechanism or flag, checked before anything is made on either token.
NAME=modules_transport
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
softhsm2-util --init-token --free --label tsrc --so-pin 12345678 --pin 1234 >/dev/null
SRC="pkcs11:token=tsrc?module-path=$MODULE&pin-value=1234"

transport() {  # transport DST_URI: prints the error of transport.new(SoftHSM2, DST), and the
               # number of objects on the destination before and after
  h -e "local hsm = require('hsm'); local tr = require('hsm.transport')
        local src, dst = hsm.token('$SRC'), hsm.token('$1')
        local before = #assert(dst:find_all({}))
        local ok, e = pcall(tr.new, src, dst, {kind = 'rsa-aes'})
        print(ok and 'ok' or e); print('objects', before, #assert(dst:find_all({})))"
  rc_is 0
}
# tpm2-pkcs11 lists RSA-OAEP without CKF_UNWRAP (and has no AES key wrap).
transport "$TPM2_URI"
has out "the destination token lists CKM_RSA_PKCS_OAEP without CKF_UNWRAP"
# openCryptoki 3.8 has OAEP both ways but no AES key wrap.
transport "$OCK_URI"
has out "rsa-aes: the destination token lacks AES-KWP (neither CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD)"
for f in out; do
  if awk '/^objects/ { exit $2 == $3 ? 0 : 1 }' "$f"; then pass; else fail "objects changed: $(show out)"; fi
done

# transport=auto chooses by what both sides offer: RSA-OAEP for secret keys into
# openCryptoki (no AES key wrap; private keys blocked with the reason), nothing into
# tpm2-pkcs11 (no unwrap: every key blocked, public objects still copied). Closed, it
# leaves neither token with an object more.
auto() {  # auto DST_URI: prints the kind, why private keys cannot go, why nothing can, and
          # the objects on both tokens before and after
  h -e "local hsm = require('hsm'); local tr = require('hsm.transport')
        local src, dst = hsm.token('$SRC'), hsm.token('$1')
        local b1, b2 = #assert(src:find_all({})), #assert(dst:find_all({}))
        local t = tr.new(src, dst, {})
        print('kind', t.kind); print('private', tostring(t.private)); print('unavailable', tostring(t.unavailable))
        t.close()
        print('objects', b1 + b2, #assert(src:find_all({})) + #assert(dst:find_all({})))"
  rc_is 0
  if awk '/^objects/ { exit $2 == $3 ? 0 : 1 }' out; then pass; else fail "objects changed: $(show out)"; fi
}
auto "$OCK_URI"
has out "kind	rsa-oaep"
has out "private	no transport for private keys: the destination token lacks AES-KWP"
auto "$TPM2_URI"
has out "kind	none"
has out "unavailable	no transport: needs CKM_RSA_AES_KEY_WRAP or CKM_RSA_PKCS_OAEP with CKF_WRAP on the source and CKF_UNWRAP on the destination: the destination token lists CKM_RSA_PKCS_OAEP without CKF_UNWRAP"
finish
