#!/usr/bin/env bash
# backup_restore: protectserver/backup-file as two client machines (two SoftHSM2 token
# directories sharing only the archive file and the custodians' components): the lab token
# backed up with 2 components restores onto an empty token with the same objects, pkcs11-tool
# decrypts on the restored token what the original encrypted, and bad input (wrong component,
# tampered archive, unconfirmed component) changes nothing. Kills: the serial restore once
# (after its 5th C_UnwrapKey), the workers=2 restore twice (after the 3rd C_CopyObject, after
# the 6th C_UnwrapKey), each resumed; every call index of the serial restore, with the
# attribute oracle, is kill_sweep_restore.sh (workers=2 is not swept).
# Usage: bash backup_restore.sh /abs/path/to/hsmsh
set -u
NAME=backup_restore
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"

"$HSMSH" lab init > /dev/null 2>&1
SRC_CONF=$SOFTHSM2_CONF
mkdir -p "$work/m2/tokens"
printf 'directories.tokendir = %s/m2/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/m2/softhsm2.conf"
DST_CONF=$work/m2/softhsm2.conf
SOFTHSM2_CONF=$DST_CONF softhsm2-util --init-token --free --label ps3 --pin 1234 --so-pin 12345678 > /dev/null
printf '1234' > "$work/pin"
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
PS3="pkcs11:token=ps3?pin-source=file:$work/pin"
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
printf '1111111111111111111111111111111111111111111111111111111111111111\n' > "$work/c3"
COMPS="components=file:$work/c1,file:$work/c2"

p11() {  # p11 CONF TOKEN ARGS... (a pkcs11-tool failure prints pkcs11-tool-failed)
  local conf=$1 tok=$2; shift 2
  SOFTHSM2_CONF=$conf pkcs11-tool --module "$MODULE" --token-label "$tok" --login --pin 1234 "$@" 2> /dev/null \
    || echo "pkcs11-tool-failed ($tok, $RANDOM)"   # never equal to another listing
}
# listed CONF TOKEN REGEX: how many lines of the token's object list match (pkcs11-tool-failed
# when the listing failed, which no count comparison accepts)
listed() {
  local out; out=$(p11 "$1" "$2" --list-objects)
  case $out in *pkcs11-tool-failed*) echo pkcs11-tool-failed; return ;; esac
  grep -cE "$3" <<< "$out"
}
objects() { listed "$1" "$2" '^(Secret Key|Private Key|Public Key|Certificate) Object|^Data object'; }

# ---- backup on machine 1 ----
export SOFTHSM2_CONF=$SRC_CONF
h run protectserver/backup-file side=backup token="$BLUE" file="$work/blue.arc" "$COMPS"; rc_is 1
has err "component 1 (KCV 9C1884): confirm it with kcvs=... or --yes"
check "an unconfirmed component writes no archive" [ ! -e "$work/blue.arc" ]
h run protectserver/backup-file side=backup token="$BLUE" file="$work/blue.arc" "$COMPS" kcvs=9c1884,000000; rc_is 1
has err "component 2 has KCV 62A639, the custodian's record says 000000"
h run protectserver/backup-file side=backup token="$BLUE" file="$work/blue.arc" "$COMPS" kcvs=9C1884,62A639; rc_is 0
has err "Key 'AES_WRAP' KCV : 97498B"
has err "wrote $work/blue.arc: 25 objects (11 keys wrapped, 3 not exportable)"
has err "not extractable: no PKCS#11 call can export it, not even for token replication; re-encrypt its data under a new key with generic/rotate-reencrypt"
lacks err "0832240A"
check "the archive holds no component" bash -c "! grep -qa -e 0832240A -e 263FF91E '$work/blue.arc'"
# What the original encrypts, to be decrypted on the restored token.
printf 'attack at dawn!!' > "$work/pt"
p11 "$SRC_CONF" blue --encrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 \
  --input-file "$work/pt" --output-file "$work/ct"
check "pkcs11-tool encrypted on blue" [ -s "$work/ct" ]

# ---- restore on machine 2 ----
export SOFTHSM2_CONF=$DST_CONF
cp "$work/blue.arc" "$work/bad.arc"
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[4000]^=0x01; open(p,"wb").write(b)' "$work/bad.arc"
h run protectserver/backup-file side=restore token="$PS3" file="$work/bad.arc" "$COMPS" --yes; rc_is 1
has err "bad.arc"
check "a tampered archive writes nothing" [ "$(objects "$DST_CONF" ps3)" -eq 0 ]
head -c 3000 "$work/blue.arc" > "$work/short.arc"
h run protectserver/backup-file side=restore token="$PS3" file="$work/short.arc" "$COMPS" --yes; rc_is 1
has err "short.arc"
check "a truncated archive writes nothing" [ "$(objects "$DST_CONF" ps3)" -eq 0 ]
h run protectserver/backup-file side=restore token="$PS3" file="$work/blue.arc" components="file:$work/c1,file:$work/c3" --yes; rc_is 1
has err "made with the key of KCV 97498b"
check "a wrong component writes nothing" [ "$(objects "$DST_CONF" ps3)" -eq 0 ]
# A kill -9 in the middle of the restore (at the 5th C_UnwrapKey), then resume: nothing lost
# or doubled.
FPS3="pkcs11:token=ps3?module-path=${HSMSH_FAULT_LIB:?run through ctest}&pin-source=file:$work/pin"
HSMSH_FAULT="kill:C_UnwrapKey:5:after" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run protectserver/backup-file \
  side=restore token="$FPS3" file="$work/blue.arc" "$COMPS" --yes --journal "$work/jk"
rc=$?; cmd="restore killed at the 5th C_UnwrapKey"; rc_is 137
check "the kill left a partial restore" [ "$(objects "$DST_CONF" ps3)" -gt 0 ]
h resume "$work/jk" --yes --json; rc_is 0
check "resumed: 22 objects, none doubled" [ "$(objects "$DST_CONF" ps3)" -eq 22 ]
h run protectserver/backup-file side=restore token="$PS3" file="$work/blue.arc" "$COMPS" kcvs=9c1884,62a639 --json --journal "$work/j"; rc_is 0
summary() { python3 -c 'import json,sys
s=[json.loads(l) for l in open("out") if l.startswith("{")][-1]
print("%s/%s/%s/%s" % (s.get("migrated"), s.get("skipped"), s.get("blocked"), s.get("failed")))'; }
check "everything already there after the resume: $(summary)" [ "$(summary)" = "0/22/3/0" ]
check "ps3 holds the 22 objects" [ "$(objects "$DST_CONF" ps3)" -eq 22 ]
got=$(p11 "$DST_CONF" ps3 --decrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 --input-file "$work/ct")
check "pkcs11-tool decrypts on ps3 what blue encrypted (got '$got')" [ "$got" = "attack at dawn!!" ]
h run protectserver/backup-file side=restore token="$PS3" file="$work/blue.arc" "$COMPS" --yes --json; rc_is 0
check "restoring again changes nothing: $(summary)" [ "$(summary)" = "0/22/3/0" ]
h resume "$work/j" --yes; rc_is 0
check "no wrapping key left on ps3" [ "$(listed "$DST_CONF" ps3 AES_WRAP)" -eq 0 ]

# workers=2: the keys unwrapped by two threads (the journal's "batch" events), into a session
# object each and copied to the token (SoftHSM2's quirk), then settled one by one. Killed
# after the 3rd copy to the token (3 keys there, the others' session objects gone with the
# process) and in a worker thread (after the 6th C_UnwrapKey), each time resumed: exactly the
# objects the serial restore made on ps3, attribute for attribute as pkcs11-tool lists them.
inventory() {  # one sorted line per object (a data object's handle aside)
  p11 "$1" "$2" --list-objects | sed 's/^Data object [0-9]*/Data object/' |
    awk '/^[^ ]/ { if (r != "") print r; r = $0; next } { r = r "|" $0 } END { if (r != "") print r }' | sort
}
FPS4="pkcs11:token=ps4?module-path=$HSMSH_FAULT_LIB&pin-source=file:$work/pin"
PS5="pkcs11:token=ps5?pin-source=file:$work/pin"
for kill in C_CopyObject:3:after C_UnwrapKey:6:after; do
  SOFTHSM2_CONF=$DST_CONF softhsm2-util --delete-token --token ps4 > /dev/null 2>&1
  SOFTHSM2_CONF=$DST_CONF softhsm2-util --init-token --free --label ps4 --pin 1234 --so-pin 12345678 > /dev/null
  rm -f "$work/jw"
  HSMSH_FAULT="kill:$kill" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run protectserver/backup-file \
    side=restore token="$FPS4" file="$work/blue.arc" "$COMPS" workers=2 --yes --journal "$work/jw"
  rc=$?; cmd="restore with workers=2 killed at $kill"; rc_is 137
  check "$cmd: the keys' intents were synced as a batch" grep -q '"event":"batch"' "$work/jw"
  h resume "$work/jw" --yes --json; rc_is 0
  check "$cmd, resumed: no key failed ($(summary))" [ "$(summary | cut -d/ -f3-)" = "3/0" ]
  check "$cmd, resumed: 22 objects, none doubled" [ "$(objects "$DST_CONF" ps4)" -eq 22 ]
  check "$cmd, resumed: the same objects as the serial restore" \
    [ "$(inventory "$DST_CONF" ps4)" = "$(inventory "$DST_CONF" ps3)" ]
done
SOFTHSM2_CONF=$DST_CONF softhsm2-util --init-token --free --label ps5 --pin 1234 --so-pin 12345678 > /dev/null
h run protectserver/backup-file side=restore token="$PS5" file="$work/blue.arc" "$COMPS" workers=2 \
  --yes --json --journal "$work/j5"; rc_is 0
check "workers=2 restores every exported object: $(summary)" [ "$(summary)" = "22/0/3/0" ]
check "workers=2 unwrapped the keys as a batch" grep -q '"event":"batch","keys":11' "$work/j5"
check "workers=2: the same objects as the serial restore" [ "$(inventory "$DST_CONF" ps5)" = "$(inventory "$DST_CONF" ps3)" ]
got=$(p11 "$DST_CONF" ps5 --decrypt --mechanism AES-CBC --iv 000102030405060708090a0b0c0d0e0f --id 0102 --input-file "$work/ct")
check "pkcs11-tool decrypts on ps5 what blue encrypted (got '$got')" [ "$got" = "attack at dawn!!" ]
# The copy to the token fails after making the object: recovered. Before: that key fails, and
# a re-run finishes it.
for rule in C_CopyObject:2:CKR_DEVICE_ERROR:after C_CopyObject:2:CKR_DEVICE_ERROR; do
  SOFTHSM2_CONF=$DST_CONF softhsm2-util --delete-token --token ps4 > /dev/null 2>&1
  SOFTHSM2_CONF=$DST_CONF softhsm2-util --init-token --free --label ps4 --pin 1234 --so-pin 12345678 > /dev/null
  HSMSH_FAULT=$rule h run protectserver/backup-file side=restore token="$FPS4" file="$work/blue.arc" "$COMPS" --yes --json
  cmd="restore with $rule"
  if [ "${rule##*:}" = after ]; then
    rc_is 0; has out '"recovered":"the module reported CKR_DEVICE_ERROR but the key was created"'
    check "$cmd: $(summary)" [ "$(summary)" = "22/0/3/0" ]
  else
    rc_is 1; has out 'copy to the token: C_CopyObject: CKR_DEVICE_ERROR'
    check "$cmd: $(summary)" [ "$(summary)" = "21/0/3/1" ]
    check "$cmd: 21 objects, nothing half-made" [ "$(objects "$DST_CONF" ps4)" -eq 21 ]
    h run protectserver/backup-file side=restore token="$FPS4" file="$work/blue.arc" "$COMPS" --yes --json
    rc_is 0; check "$cmd, then a re-run: $(summary)" [ "$(summary)" = "1/21/3/0" ]
  fi
  check "$cmd: the same objects as the serial restore" [ "$(inventory "$DST_CONF" ps4)" = "$(inventory "$DST_CONF" ps3)" ]
done
h run protectserver/backup-file side=restore token="$PS5" file="$work/blue.arc" "$COMPS" workers=0 --yes
rc_is 1; has err "workers must be between 1 and 32"

finish
