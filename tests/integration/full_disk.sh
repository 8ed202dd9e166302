#!/usr/bin/env bash
# full_disk: a file system that fills up under a run (a tmpfs too small for what the run
# writes, or filled up meanwhile) stops the run with a message naming the file and the
# cause, leaves no half-written file under a real name, and running it again once there is
# room finishes the work with nothing doubled:
#  - a migration whose journal fills its file system stops at that write (the keys made so
#    far are journaled); the journal moved to a larger disk, `hsmsh resume` finishes it;
#  - generic/blue-green step=prepare whose last backup does not fit: refused, no archive and
#    no temporary file left; run again with room, one replication key on each side and
#    green's keys once;
#  - a canary on a full disk leaves the route state as it was (the weights unchanged);
#  - a sync on a full disk copies what it copies, cannot record it, and says so; run again
#    with room, nothing is copied a second time.
# (outputs.sh: an archive onto a full disk.) Needs root for the tmpfs mounts (CI runs as
# root); without it the test fails.
set -u
NAME=full_disk
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
"$HSMSH" lab init > /dev/null 2>&1 || fail "lab init"
printf '1234' > pin
P="?pin-source=file:$work/pin"
mounts=()
trap 'for m in "${mounts[@]}"; do umount "$m" 2> /dev/null; done; rm -rf "$work"' EXIT
small_fs() {  # small_fs DIR KIB: a tmpfs of KIB KiB at DIR
  mkdir -p "$1"
  if mount -t tmpfs -o "size=$2k" tmpfs "$1"; then mounts+=("$1")
  else fail "cannot mount a $2 KiB tmpfs at $1 (the test needs root)"; fi
}
fill() { cat /dev/zero > "$1/filler" 2> /dev/null; }   # fill DIR: no room left on DIR's disk
# count TOKEN: its objects, and how many labels are held twice
count() {
  U="pkcs11:token=$1$P" "$HSMSH" -e 'local s = hsm.token(os.getenv("U")); local seen, twice = {}, 0
    local objs = assert(s:objects())
    for _, o in ipairs(objs) do
      local k = o.class .. "/" .. require("hsm.keys").hex(o.id or "") .. "/" .. o.label
      if seen[k] then twice = twice + 1 end; seen[k] = true
    end
    print(#objs .. " " .. twice)'
}

# ---- a migration's journal fills its disk
for t in m1 m2; do softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null; done
small_fs "$work/j" 4
h run generic/migrate from="pkcs11:token=blue$P" to="pkcs11:token=m1$P" --journal "$work/j/journal"
rc_is 1; has err "cannot write journal $work/j/journal"; has err "No space left on device"
lacks err "stack traceback"
read -r made twice < <(count m1)
check "the run stopped part-way ($made objects on m1)" [ "$made" -gt 0 ] && [ "$made" -lt 22 ]
cp "$work/j/journal" "$work/journal"
h resume "$work/journal" from="pkcs11:token=blue$P" to="pkcs11:token=m1$P"
rc_is 0; has err "0 failed"
read -r made twice < <(count m1)
check "the resume finished: 22 objects on m1, none twice (got $made, $twice twice)" [ "$made" = 22 ] && [ "$twice" = 0 ]
# the same migration into an empty token, for comparison
h run generic/migrate from="pkcs11:token=blue$P" to="pkcs11:token=m2$P"; rc_is 0
check "m1 holds what a migration that had room made ($(count m2))" [ "$(count m1)" = "$(count m2)" ]

# ---- blue/green: the last backup does not fit
small_fs "$work/s" 16
S=$work/s/route.state
bg() { h run generic/blue-green state="$S" pin_source="file:$work/pin" "$@"; }
h run generic/blue-green step=prepare state="$S" blue="pkcs11:token=blue$P" green="pkcs11:token=green$P"
rc_is 1; has err "cannot write archive $S.backup"; has err "No space left on device"
check "no backup and no temporary file left ($(ls "$work/s" | tr '\n' ' '))" [ ! -e "$S.backup" ] && [ ! -e "$S.backup.tmp" ]
check "no route state: applications cannot follow a cutover that is not prepared" [ ! -e "$S" ]
mkdir "$work/keep"; cp "$work/s/"* "$work/keep/"
umount "$work/s"; small_fs "$work/s" 1024; cp "$work/keep/"* "$work/s/"
h run generic/blue-green step=prepare state="$S" blue="pkcs11:token=blue$P" green="pkcs11:token=green$P"
rc_is 0
repl() {  # repl TOKEN: how many replication keys it holds
  U="pkcs11:token=$1$P" "$HSMSH" -e 'local n = 0
    for _, o in ipairs(assert(hsm.token(os.getenv("U")):objects())) do
      if o.label:match("^hsmsh%-bluegreen%-") then n = n + 1 end
    end
    print(n)'
}
check "one replication key on each side (blue $(repl blue), green $(repl green))" [ "$(repl blue)" = 1 ] && [ "$(repl green)" = 1 ]
read -r made twice < <(count green)
check "green holds blue's objects once (got $made, $twice twice)" [ "$made" = 23 ] && [ "$twice" = 0 ]
bg step=parity; rc_is 0

# ---- a canary on a full disk
cp "$S" "$work/state-before"
fill "$work/s"
bg step=canary weight=10 watch=1
rc_is 1; has err "cannot write route state $S"; has err "No space left on device"; one_line
check "the route state is as it was (weights 100/0)" cmp -s "$S" "$work/state-before"

# ---- a sync on a full disk, then again with room
U="pkcs11:token=blue$P" "$HSMSH" -e 'assert(hsm.token(os.getenv("U")):generate{type = "AES", bits = 256,
  label = "made-later", id = "\x77", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})' || fail "a key on blue"
bg step=sync
rc_is 1; has err "sync: 1 copied, 0 deleted, 0 changed, but the step cannot be recorded"
has err "No space left on device"; has err "run step=sync again once there is room"; one_line
rm -f "$work/s/filler"
bg step=sync; rc_is 0
read -r made twice < <(count green)
check "green holds the new key once (got $made objects, $twice twice)" [ "$made" = 24 ] && [ "$twice" = 0 ]
check "no temporary file left on the state's disk ($(ls "$work/s" | tr '\n' ' '))" \
  bash -c "! ls '$work/s' | grep -q '\.tmp'"
finish
