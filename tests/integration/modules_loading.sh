#!/usr/bin/env bash
# Loading modules other than SoftHSM2 (issue 11, Deliver 1) on the real modules that
# .ci/modules.sh starts: NSS softokn by module-path with x-init-reserved= and by its p11-kit
# registration (module-name=, honouring x-init-reserved:), the C_Initialize failure without
# them naming the module and the cure, NSS's two tokens with one serial told apart, NSS
# behind p11-kit-proxy, and a login on openCryptoki and tpm2-pkcs11.
NAME=modules_loading
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"

lua_token() {  # lua_token URI: opens it and prints label|serial|manufacturer|model
  h -e "local hsm = require('hsm'); local s, ti = hsm.token('$1')
        io.write(ti.label, '|', ti.serial, '|', ti.manufacturer, '|', ti.model, '\n')"
}

lua_token "$NSS_URI"
rc_is 0; has out "NSS Certificate DB|0000000000000000|Mozilla Foundation|NSS 3"

lua_token "$NSS_NAMED_URI"
rc_is 0; has out "NSS Certificate DB|"

# A bare module-path without the arguments: the module, the CKR and both cures are named.
lua_token "pkcs11:token=NSS%20Certificate%20DB?module-path=$HSMSH_NSS_MODULE&pin-value=1"
rc_is 1; has err "cannot initialise PKCS#11 module $HSMSH_NSS_MODULE: C_Initialize: CKR_ARGUMENTS_BAD"
has err "x-init-reserved="; has err "module-name="

# Wrong arguments are named as such.
bad=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("configdir='"'"'sql:/nonexistent-hsmsh'"'"' flags=", safe=""))')
lua_token "pkcs11:token=x?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$bad"
rc_is 1; has err "with the initialisation arguments \"configdir='sql:/nonexistent-hsmsh' flags=\""

# Equal serials: the ambiguity names the labels and slot ids, not "add serial=".
lua_token "pkcs11:serial=0000000000000000?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$NSS_INIT_Q"
rc_is 1; has err "they share serial 0000000000000000: add token= (the label) or slot-id="
has err "NSS Generic Crypto Services (slot-id="; has err "NSS Certificate DB (slot-id="

# The same library with other arguments in one process is refused, not silently shared.
h -e "local hsm = require('hsm'); assert(hsm.token('$NSS_URI'))
      local ok, e = pcall(hsm.token, 'pkcs11:token=x?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$bad')
      print(e)"
rc_is 0; has out "already initialised in this process with other initialisation arguments"

# Behind p11-kit-proxy: the library says "PKCS#11 Kit", the token and slot are NSS's own.
h -e "local hsm = require('hsm'); local s, ti = hsm.token('$PROXY_NSS_URI')
      local m = s:module(); print(m:info().manufacturer); print(ti.manufacturer)
      print(m:slot_info(s:slot()).manufacturer)"
rc_is 0; has out "PKCS#11 Kit"; has out "Mozilla Foundation"

lua_token "$OCK_URI"
rc_is 0; has out "$HSMSH_OCK_TOKEN|123|IBM Corp.|IBM SoftTok"

lua_token "$TPM2_URI"
rc_is 0; has out "$HSMSH_TPM2_TOKEN|0000000000000000|"

finish
