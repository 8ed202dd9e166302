# tests/modules/common.bash - sourced after tests/integration/common.bash by the tests that
# run on NSS softokn, openCryptoki and tpm2-pkcs11: reads the environment .ci/modules.sh
# start wrote (HSMSH_MODULES_ENV). Missing is a failure, never a skip.
env_file=${HSMSH_MODULES_ENV:-}
if [ -z "$env_file" ] || [ ! -r "$env_file" ]; then
  echo "FAIL: no module environment (HSMSH_MODULES_ENV='$env_file'): run .ci/modules.sh start" \
       "(.ci/setup does) before ctest"
  exit 1
fi
# shellcheck disable=SC1090
. "$env_file"
# The URI-encoded NSS initialisation arguments, for x-init-reserved=.
NSS_INIT_Q=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["HSMSH_NSS_INIT"], safe=""))')
NSS_URI="pkcs11:token=NSS%20Certificate%20DB?module-path=$HSMSH_NSS_MODULE&x-init-reserved=$NSS_INIT_Q&pin-value=$HSMSH_NSS_PIN"
NSS_NAMED_URI="pkcs11:token=NSS%20Certificate%20DB?module-name=$HSMSH_NSS_REGISTERED&pin-value=$HSMSH_NSS_PIN"
OCK_URI="pkcs11:token=$HSMSH_OCK_TOKEN?module-path=$HSMSH_OCK_MODULE&pin-value=$HSMSH_OCK_PIN"
TPM2_URI="pkcs11:token=$HSMSH_TPM2_TOKEN?module-path=$HSMSH_TPM2_MODULE&pin-value=$HSMSH_TPM2_PIN"
PROXY_NSS_URI="pkcs11:token=NSS%20Certificate%20DB?module-path=$HSMSH_P11KIT_PROXY&pin-value=$HSMSH_NSS_PIN"
