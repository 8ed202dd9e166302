#!/usr/bin/env bash
# claims: two runs never write one token at once (hsm.claim), one run per journal, a cut
# journal line repaired, and secret-carrying parameters never echoed (issue 10).
#  - a live holder (a process holding the claim on dst) makes a migration into dst refuse at
#    once, naming its pid; nothing is written;
#  - another "machine" (its own lock directory and host name, the same token directory)
#    refuses too, on the token's lease alone;
#  - the holder killed with -9: on its own host the next run proves it gone and takes over
#    (journaled);
#  - a new run refuses a journal holding another run; a cut last line is set aside on resume;
#  - so_pin=, pin-source= and components= given a literal secret: the message names the
#    parameter and not the value.
set -u
NAME=claims
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
export HSMSH_LOCK_DIR=$work/locks-a HSMSH_HOST=host-a
printf '1234\n' > "$work/pin"
for t in src dst; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
SRC="pkcs11:token=src?pin-source=file:$work/pin"
DST="pkcs11:token=dst?pin-source=file:$work/pin"
U="$SRC" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) assert(s:generate{type = "AES", bits = 128, label = "k", id = "\1", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})' || fail "making the source key"
count() { U="$DST" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) local n = 0 for _, o in ipairs(assert(s:objects())) do if o.class == "CKO_SECRET_KEY" then n = n + 1 end end print(n)'; }

# A holder: takes the claim on dst and sleeps (TTL given by the caller).
cat > "$work/hold.lua" <<'LUA'
local hsm = require("hsm")
local s, info = hsm.token(arg[1])
local c = require("hsm.claim").take(s, info, {recipe = "test-holder"})
io.stdout:write("held\n"); io.stdout:flush()
hsm.core.sleep(60)
c:release()
LUA
HSMSH_LEASE_TTL=2 "$HSMSH" "$work/hold.lua" "$DST" > hold.out 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q held hold.out 2>/dev/null && break; sleep 0.1; done
check "the holder took the claim ($(cat hold.out))" grep -q held hold.out

h run generic/migrate from="$SRC" to="$DST"
rc_is 1; has err "token dst is in use by pid $holder on host host-a"; one_line
check "nothing written while claimed (count $(count))" [ "$(count)" = 0 ]

HSMSH_LOCK_DIR=$work/locks-b HSMSH_HOST=host-b h run generic/migrate from="$SRC" to="$DST"
rc_is 1; has err "token dst is in use by pid $holder on host host-a"

kill -9 "$holder"; wait "$holder" 2>/dev/null
h run generic/migrate from="$SRC" to="$DST"
rc_is 0
check "one key on dst after the takeover (count $(count))" [ "$(count)" = 1 ]

# Same host: a killed holder is proven gone at once.
HSMSH_LEASE_TTL=600 "$HSMSH" "$work/hold.lua" "$DST" > hold.out 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q held hold.out 2>/dev/null && break; sleep 0.1; done
kill -9 "$holder"; wait "$holder" 2>/dev/null
h run generic/migrate from="$SRC" to="$DST" --journal "$work/ja"
rc_is 0; has "$work/ja" '"event":"claim-takeover"'; has "$work/ja" "is gone"
check "still one key on dst (count $(count))" [ "$(count)" = 1 ]
check "no lease left on dst" [ "$(U="$DST" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) print(#assert(s:find_all{CKA_APPLICATION = "hsmsh-lease"}))')" = 0 ]

# Journals: one run each; a cut last line is set aside.
h run generic/migrate from="$SRC" to="$DST" --journal "$work/ja"
rc_is 1; has err "already holds a run of generic/migrate"
printf '{"event":"step","ref":"x' >> "$work/ja"
h resume "$work/ja"
rc_is 0; has err "last line was cut short"
check "the cut line is kept aside" grep -q '"ref":"x' "$work/ja.cut"
h resume "$work/ja"
rc_is 0; lacks err "line"
h resume "$work"
rc_is 1; has err "is a directory"; one_line

# Secrets typed in the wrong place are never echoed.
CANARY='Cn4ry-s3cr3t'
h run protectserver/trust action=list trusting="$DST" so_pin="$CANARY"
rc_is 1; has err "parameter so_pin must be file:PATH or prompt"; lacks err "$CANARY"
h run protectserver/backup-file side=backup token="$SRC" file="$work/a.arc" components="$CANARY"
rc_is 1; has err "parameter components"; lacks err "$CANARY"
h run generic/inventory token="pkcs11:token=src?pin-source=$CANARY"
rc_is 1; lacks err "$CANARY"; lacks out "$CANARY"
h run generic/migrate from="pkcs11:token=src?pin-value=12,34" to="$DST" --journal "$work/jc"
lacks "$work/jc" "12,34"; lacks "$work/jc" 'pin-value'
finish
