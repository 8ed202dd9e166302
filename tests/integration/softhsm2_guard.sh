#!/usr/bin/env bash
# softhsm2_guard: hsmsh processes sharing one SoftHSM2 token directory never see a token
# half-written by another (backends/softhsm2/guard.c). SoftHSM2 rewrites token.object on
# every C_Login and releases its file lock before the write reaches the file; a process that
# re-reads the file then sees the token uninitialised until it re-initialises the library.
# Here two processes log in 200 times each while a third looks the token up 800 times, in
# 6 rounds: with the guard every lookup and every login succeeds. The control runs the same
# rounds without the guard (HSMSH_SOFTHSM2_GUARD=0): lookups or logins then fail (measured:
# 500 to 1000 of 4800 lookups, in every round), which shows the test can see the race.
# Then processes are killed inside reads and writes, and the others carry on.
set -u
NAME=softhsm2_guard
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
softhsm2-util --init-token --free --label r --pin 1234 --so-pin 12345678 > /dev/null
cat > login.lua <<'LUA'
local hsm = require("hsm")
for _ = 1, 200 do
  local s = hsm.token("pkcs11:token=r?pin-value=1234")
  s:logout() s:close()
end
LUA
cat > lookup.lua <<'LUA'
local hsm = require("hsm")
local bad, first = 0, nil
for i = 1, 800 do
  local ok, s = pcall(hsm.token, "pkcs11:token=r", {login = false})
  if ok then s:close() else bad = bad + 1; first = first or ("at " .. i .. ": " .. s) end
end
print(bad, first or "")
LUA
rounds() {  # rounds GUARD: "BAD FIRST" per round, one line each
  for _ in 1 2 3 4 5 6; do
    HSMSH_SOFTHSM2_GUARD=$1 "$HSMSH" login.lua 2>> login.err & a=$!
    HSMSH_SOFTHSM2_GUARD=$1 "$HSMSH" login.lua 2>> login.err & b=$!
    HSMSH_SOFTHSM2_GUARD=$1 "$HSMSH" lookup.lua
    wait $a || echo "login loop failed"; wait $b || echo "login loop failed"
  done
}
rounds 1 > guarded.out 2>&1
bad=$(awk '{ n += $1 } END { print n + 0 }' guarded.out)
check "6 rounds produced 6 lookup results ($(show guarded.out))" [ "$(grep -c '^[0-9]' guarded.out)" = 6 ]
check "no login loop failed ($(show guarded.out))" [ "$(grep -c 'failed' guarded.out)" = 0 ]
check "guarded: all 4800 lookups found the token while 2400 logins ran ($bad failed: $(grep -v '^0' guarded.out | head -1))" [ "$bad" = 0 ]
check "the lock file is in the token directory, beside the tokens" [ -f tokens/.hsmsh-io.lock ]
check "SoftHSM2 ignores the lock file: it still lists token r" \
  grep -qE 'Label: +r *$' <(softhsm2-util --show-slots)

# Kill -9 at any point leaves nothing held. The lock file's first page holds a writer count
# (header, second int) and one 64-byte slot per process whose first int counts that process's
# reads in progress. A process killed inside a read leaves its slot counted: provoked (while a
# waiting writer process already holds a slot of its own, so that no newcomer reclaims the
# dead one) until the page shows it; the writer's 200 logins must then skip the dead slot. A
# process killed inside a write leaves the writer count raised: provoked on another token (a
# kill inside SoftHSM2's own write of token.object can leave that token unreadable), and the
# lookups on r must then run and uncount it.
softhsm2-util --init-token --free --label w --pin 1234 --so-pin 12345678 > /dev/null
cat > waiting_writer.lua <<'LUA'
local hsm = require("hsm")
hsm.token("pkcs11:token=r", {login = false}):close()   -- this process now holds a slot
io.open("ready", "w"):close()
while not io.open("go") do os.execute("sleep 0.05") end
for _ = 1, 200 do hsm.token("pkcs11:token=r?pin-value=1234"):close() end
LUA
cat > forever_lookup.lua <<'LUA'
local hsm = require("hsm")
while true do pcall(function() hsm.token("pkcs11:token=r", {login = false}):close() end) end
LUA
cat > forever_login_w.lua <<'LUA'
local hsm = require("hsm")
while true do pcall(function() hsm.token("pkcs11:token=w?pin-value=1234"):close() end) end
LUA
page() { od -An -v -t d4 -w64 tokens/.hsmsh-io.lock; }
stale_readers() { page | awk 'NR > 1 && $1 > 0' | wc -l; }
stale_writers() { page | awk 'NR == 1 { print $2 }'; }
provoke() {  # provoke SCRIPT TEST: kill -9 SCRIPT after 20-300 ms until TEST prints non-zero
  local n
  for n in $(seq 1 80); do
    "$HSMSH" "$1" > /dev/null 2>&1 & local p=$!
    sleep "0.$(printf '%03d' $((20 + RANDOM % 280)))"
    kill -9 $p; wait $p 2> /dev/null
    [ "$($2)" -gt 0 ] && { echo $n; return; }
  done
  echo 0
}
"$HSMSH" waiting_writer.lua > writer.out 2>&1 & writer=$!
for _ in $(seq 1 100); do [ -f ready ] && break; sleep 0.1; done
kills=$(provoke forever_lookup.lua stale_readers)
check "a reader killed inside a call left its slot counted (after $kills kills)" [ "$kills" -gt 0 ]
touch go
for _ in $(seq 1 600); do kill -0 $writer 2> /dev/null || break; sleep 0.1; done
kill $writer 2> /dev/null   # still waiting after 60 s: it is stuck on the dead slot
wait $writer; rc=$?
echo "killed inside a read after $kills kills; the waiting writer's 200 logins then: exit $rc"
check "then 200 logins run: the writer skips the dead process's slot (exit $rc: $(show writer.out))" [ $rc = 0 ]
wkills=$(provoke forever_login_w.lua stale_writers)
check "a writer killed inside a call left the writer count raised (after $wkills kills)" [ "$wkills" -gt 0 ]
timeout 60 "$HSMSH" lookup.lua > after.out 2>&1
echo "killed inside a write after $wkills kills; 800 lookups then: $(awk '{ print $1 }' after.out) failed"
check "then 800 lookups all find the token ($(show after.out))" [ "$(awk '{ print $1 }' after.out)" = 0 ]
check "and the first of them uncounted the dead writer (count now $(stale_writers))" [ "$(stale_writers)" = 0 ]

rm -f login.err
rounds 0 > unguarded.out 2>&1
ubad=$(awk '/^[0-9]/ { n += $1 } END { print n + 0 }' unguarded.out)
uloops=$(grep -c 'login loop failed' unguarded.out)
echo "control, unguarded: $ubad of 4800 lookups failed, $uloops of 12 login loops failed ($(head -1 login.err 2>/dev/null))"
check "control: without the guard the race shows ($ubad lookups, $uloops login loops failed)" \
  [ $((ubad + uloops)) -gt 0 ]
finish
