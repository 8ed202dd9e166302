#!/usr/bin/env bash
# softhsm2_guard: hsmsh processes sharing one SoftHSM2 token directory never see a token
# half-written by another (backends/softhsm2/guard.c). SoftHSM2 rewrites token.object on
# every C_Login and releases its file lock before the write reaches the file; a process that
# re-reads the file then sees the token uninitialised until it re-initialises the library.
# Here two processes log in 200 times each while a third looks the token up 800 times, in
# 6 rounds: with the guard every lookup and every login succeeds. The control runs the same
# rounds without the guard (HSMSH_SOFTHSM2_GUARD=0): lookups or logins then fail (measured:
# 500 to 1000 of 4800 lookups, in every round), which shows the test can see the race.
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
rm -f login.err
rounds 0 > unguarded.out 2>&1
ubad=$(awk '/^[0-9]/ { n += $1 } END { print n + 0 }' unguarded.out)
uloops=$(grep -c 'login loop failed' unguarded.out)
echo "control, unguarded: $ubad of 4800 lookups failed, $uloops of 12 login loops failed ($(head -1 login.err 2>/dev/null))"
check "control: without the guard the race shows ($ubad lookups, $uloops login loops failed)" \
  [ $((ubad + uloops)) -gt 0 ]
finish
