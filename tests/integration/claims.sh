#!/usr/bin/env bash
# claims: two runs never write one token at once (hsm.claim), one run per journal, a cut
# journal line repaired, and secret-carrying parameters never echoed (issue 10).
#  - a live holder (a process holding the claim on dst) makes a migration into dst refuse at
#    once, naming its pid; nothing is written;
#  - another "machine" (its own lock directory and host name, the same token directory)
#    refuses too, on the token's lease alone;
#  - the holder killed with -9: on its own host the next run proves it gone and takes over
#    (journaled); on another host only once its lease expired;
#  - two migrations started at once: with --wait both succeed and the second finds every
#    key there; without, one refuses; never a key twice; two restores of one archive onto
#    one token likewise; a resume beside the live run of its journal refuses, naming its pid;
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

# Another host cannot prove a holder dead: its lease is taken over only once it expired.
HSMSH_LEASE_TTL=3 "$HSMSH" "$work/hold.lua" "$DST" > hold.out 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q held hold.out 2>/dev/null && break; sleep 0.1; done
kill -9 "$holder"; wait "$holder" 2>/dev/null
t_kill=$SECONDS
HSMSH_LOCK_DIR=$work/locks-b HSMSH_HOST=host-b h run generic/migrate from="$SRC" to="$DST"
rc_is 1; has err "in use by pid $holder on host host-a"
sleep $((4 - (SECONDS - t_kill)))
HSMSH_LOCK_DIR=$work/locks-b HSMSH_HOST=host-b h run generic/migrate from="$SRC" to="$DST" --journal "$work/jb"
rc_is 0; has "$work/jb" '"event":"claim-takeover"'; has "$work/jb" "expired"

# Same host: a killed holder is proven gone at once.
HSMSH_LEASE_TTL=600 "$HSMSH" "$work/hold.lua" "$DST" > hold.out 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q held hold.out 2>/dev/null && break; sleep 0.1; done
kill -9 "$holder"; wait "$holder" 2>/dev/null
h run generic/migrate from="$SRC" to="$DST" --journal "$work/ja"
rc_is 0; has "$work/ja" '"event":"claim-takeover"'; has "$work/ja" "is gone"
check "still one key on dst (count $(count))" [ "$(count)" = 1 ]
check "no lease left on dst" [ "$(U="$DST" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) print(#assert(s:find_all{CKA_APPLICATION = "hsmsh-lease"}))')" = 0 ]

# Two migrations started at once into one token: with --wait the second queues behind the
# first and then finds every key there; without it, it refuses. Never a key twice.
U="$SRC" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) for i = 2, 40 do assert(s:generate{type = "AES", bits = 128, label = "k" .. i, id = string.char(i), CKA_EXTRACTABLE = true, CKA_ENCRYPT = true}) end' || fail "making 39 more source keys"
both() {  # both OPTS: two runs at once; their exit codes in rc1 rc2, outputs in r1.* r2.*
  "$HSMSH" run generic/migrate from="$SRC" to="$DST" --json "$@" --journal "$work/j1" > r1.out 2> r1.err & p1=$!
  "$HSMSH" run generic/migrate from="$SRC" to="$DST" --json "$@" --journal "$work/j2" > r2.out 2> r2.err & p2=$!
  wait $p1; rc1=$?; wait $p2; rc2=$?
  rm -f "$work/j1" "$work/j2"
}
U="$DST" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) for _, o in ipairs(assert(s:objects())) do o:destroy() end'
both --wait
check "two runs with --wait both succeed (exits $rc1 $rc2: $(show r1.err) $(show r2.err))" [ "$rc1$rc2" = 00 ]
check "exactly 40 keys on dst after two concurrent runs (count $(count))" [ "$(count)" = 40 ]
m=$(cat r1.out r2.out | grep -o '"migrated":[0-9]*' | sort | tr '\n' ' ')
check "one run migrated 40, the other none ($m)" [ "$m" = '"migrated":0 "migrated":40 ' ]
U="$DST" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) for _, o in ipairs(assert(s:objects())) do o:destroy() end'
both
check "two runs without --wait: one succeeds, one refuses or finds all there (exits $rc1 $rc2)" \
  grep -qxE '01|10|00' <<< "$rc1$rc2"
[ "$rc1" = 1 ] && { cp r1.err refused.err; }; [ "$rc2" = 1 ] && { cp r2.err refused.err; }
[ -f refused.err ] && { cmd="the refused run"; has refused.err "is in use by pid"; }
check "still exactly 40 keys on dst (count $(count))" [ "$(count)" = 40 ]

# Two restores of one archive onto one token at once: the same rule as for migrations.
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
RESTORE=(protectserver/backup-file components="file:$work/c1,file:$work/c2" kcvs=9c1884,62a639)
h run "${RESTORE[@]}" side=backup token="$SRC" file="$work/src.arc"
rc_is 0
softhsm2-util --init-token --free --label rr --pin 1234 --so-pin 12345678 > /dev/null
RR="pkcs11:token=rr?pin-source=file:$work/pin"
rcount() { U="$RR" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) local n = 0 for _, o in ipairs(assert(s:objects())) do if o.class == "CKO_SECRET_KEY" then n = n + 1 end end print(n)'; }
for wait in --wait ""; do
  "$HSMSH" run "${RESTORE[@]}" side=restore token="$RR" file="$work/src.arc" --yes $wait > q1.out 2> q1.err & p1=$!
  "$HSMSH" run "${RESTORE[@]}" side=restore token="$RR" file="$work/src.arc" --yes $wait > q2.out 2> q2.err & p2=$!
  wait $p1; rc1=$?; wait $p2; rc2=$?
  if [ -n "$wait" ]; then
    check "two restores with --wait both succeed (exits $rc1 $rc2: $(show q1.err) $(show q2.err))" [ "$rc1$rc2" = 00 ]
  else
    check "two restores without --wait: neither fails but by refusing (exits $rc1 $rc2: $(show q1.err) $(show q2.err))" \
      grep -qxE '01|10|00' <<< "$rc1$rc2"
  fi
  check "exactly 40 keys on the restored token after two restores at once $wait (count $(rcount))" [ "$(rcount)" = 40 ]
  U="$RR" "$HSMSH" -e 'local s = require("hsm").token(os.getenv("U")) for _, o in ipairs(assert(s:objects())) do o:destroy() end'
done

# A resume beside the live run of its journal refuses, naming it: the run below waits for
# a holder's claim with its journal open.
HSMSH_LEASE_TTL=600 "$HSMSH" "$work/hold.lua" "$DST" > hold.out 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q held hold.out 2>/dev/null && break; sleep 0.1; done
"$HSMSH" run generic/migrate from="$SRC" to="$DST" --wait --journal "$work/jl" > live.out 2> live.err & live=$!
for _ in $(seq 50); do [ -s "$work/jl" ] && break; sleep 0.1; done
h resume "$work/jl"
rc_is 1; has err "pid $live"; one_line
kill "$holder"; wait "$holder" 2>/dev/null
wait "$live"; rc=$?; cmd="the waiting run, once the holder ended"; rc_is 0
check "still exactly 40 keys on dst (count $(count))" [ "$(count)" = 40 ]

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
