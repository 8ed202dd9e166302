#!/usr/bin/env bash
# The attribute model per module (issue 11 Deliver 3) on real SoftHSM2 -> NSS softokn:
# templates carry only what the destination supports, absent = PKCS#11 default, and a
# non-default value the destination cannot record is refused by name (tests/modules/attrs_check.lua).
NAME=modules_attrs
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
. "$here/../modules/common.bash"
softhsm2-util --init-token --free --label asrc --so-pin 12345678 --pin 1234 >/dev/null
h "$here/../modules/attrs_check.lua" "pkcs11:token=asrc?module-path=$MODULE&pin-value=1234" "$NSS_URI"
if [ "$rc" -eq 0 ]; then pass; else fail "$(grep FAIL out | tr '\n' '|') $(show err)"; fi
finish
