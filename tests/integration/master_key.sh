#!/usr/bin/env bash
# master_key: ep11/master-key-migrate on a blob store: re-encipherment under a new master key
# with every blob still usable, a damaged blob stopping the run with the store unchanged,
# cancel before activation, kill -9 at three C_WrapKey calls of the re-encipherment (its 1st,
# 3rd and 6th, after the 3 KAT wraps; the first two then cancelled, the last finished by a
# plain re-run, whose journal is then resumed) with no blob lost, and the old key destroyed
# only with confirmation, a second destroying run finding it gone. Kills at every PKCS#11
# call index, backup and activation included, each followed by `hsmsh resume`, are
# kill_sweep_master_key.sh.
# Usage: bash master_key.sh /abs/path/to/hsmsh
set -u
NAME=master_key
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
: "${HSMSH_FAULT_LIB:?HSMSH_FAULT_LIB is not set (run through ctest)}"

softhsm2-util --init-token --free --label ep11 --pin 1234 --so-pin 12345678 > /dev/null
printf '1234' > "$work/pin"
TOK="pkcs11:token=ep11?pin-source=file:$work/pin"
FTOK="pkcs11:token=ep11?module-path=$HSMSH_FAULT_LIB&pin-source=file:$work/pin"
STORE=$work/store
N=6

lua() { "$HSMSH" -e "local hsm = require('hsm'); local bs = require('hsm.blobstore')
  local s = hsm.token('$TOK'); $1"; }
# A store of N keys under MK1; MK2 and MK3 wait on the token. Prints the KCVs.
lua "for _, l in ipairs({'MK1', 'MK2', 'MK3'}) do
       assert(s:generate{type='AES', bits=256, label=l, CKA_WRAP=true, CKA_UNWRAP=true, CKA_ENCRYPT=true}) end
     bs.create('$STORE', s, bs.master_key(s, 'MK1'))
     for i = 1, $N do
       local k = assert(s:generate{type='AES', bits=128, token=false, CKA_EXTRACTABLE=true, CKA_ENCRYPT=true, CKA_DECRYPT=true})
       bs.put('$STORE', s, k, 'key' .. i)
       print(k:kcv())
     end" > "$work/kcvs"
check "the store holds $N keys" [ "$(wc -l < "$work/kcvs")" -eq $N ]
kcvs_now() { lua "for i = 1, $N do print(bs.get('$STORE', s, 'key' .. i):kcv()) end" 2>&1; }
state() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["state"], s["mk"]["label"])' "$STORE/store.json"; }

# ---- a damaged blob is found by the backup's verification, before anything changes ----
cp "$STORE/objects/key4.json" "$work/key4.json"
python3 -c 'import json, sys
e = json.load(open(sys.argv[1]))
e["blob"] = e["blob"][:-2] + ("00" if e["blob"][-2:] != "00" else "11")
json.dump(e, open(sys.argv[1], "w"))' "$STORE/objects/key4.json"
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK2; rc_is 1
has err "the backup's key4 does not unwrap"
check "still on MK1: $(state)" [ "$(state)" = "normal MK1" ]
cp "$work/key4.json" "$STORE/objects/key4.json"

# The token's AES-KWP is known-answer tested first (hsm.wrap.kwp): its three vectors are the
# first three C_WrapKey calls of a run; the re-encipherment's come after.
KAT=3
# ---- a device error while re-enciphering stops the run; the store is unchanged ----
export HSMSH_FAULT="C_WrapKey:$((KAT + 3)):CKR_DEVICE_ERROR"
h run ep11/master-key-migrate token="$FTOK" store="$STORE" new=MK2; rc_is 1
unset HSMSH_FAULT
has err "failed (C_WrapKey: CKR_DEVICE_ERROR)"
has err "the store is unchanged on the old key"
check "still on MK1: $(state)" [ "$(state)" = "normal MK1" ]
check "no objects.new left" [ ! -e "$STORE/objects.new" ]
check "the store still works on MK1" [ "$(kcvs_now)" = "$(cat "$work/kcvs")" ]

# ---- kill -9 at each C_WrapKey of the re-encipherment, then a plain re-run ----
for k in 1 3 6; do
  HSMSH_FAULT="kill:C_WrapKey:$((KAT + k))" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run ep11/master-key-migrate token="$FTOK" store="$STORE" new=MK2
  rc=$?; cmd="kill at C_WrapKey $k"; rc_is 137
  check "killed mid-way at $k: $(state)" [ "$(state)" = "rekey MK1" ]
  check "the blobs still open under MK1 after the kill at $k" [ "$(kcvs_now)" = "$(cat "$work/kcvs")" ]
  if [ "$k" -lt 6 ]; then
    h run ep11/master-key-migrate token="$TOK" store="$STORE" action=cancel; rc_is 0
    check "cancelled: $(state)" [ "$(state)" = "normal MK1" ]
  fi
done
# The last kill is finished by resume.
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK2 --journal "$work/j" --json; rc_is 0
has out '"event":"activated","kcv"'
check "activated: $(state)" [ "$(state)" = "normal MK2" ]
check "every blob opens under MK2 with its KCV" [ "$(kcvs_now)" = "$(cat "$work/kcvs")" ]
check "a verified backup was kept" bash -c "ls -d '$STORE'.backup-* > /dev/null"
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK2; rc_is 0
has err "already on MK2"
h resume "$work/j"; rc_is 0

# ---- the old key goes only when it is the store's old key, and with confirmation ----
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK3 destroy_old=true; rc_is 1
has err "not destroying MK2 without confirmation"
check "MK3 is active" [ "$(state)" = "normal MK3" ]
check "MK2 is still on the token" [ "$(lua "print(#s:find_all({CKA_LABEL='MK2'}))")" = "1" ]
# another key under the old key's label (MK2 renamed away, a new MK2 made): never destroyed
lua "local k = s:find_all({CKA_LABEL='MK2'})[1]; k:set{CKA_LABEL='MK2-real'}
     assert(s:generate{type='AES', bits=256, label='MK2', CKA_WRAP=true, CKA_UNWRAP=true, CKA_ENCRYPT=true})"
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK3 destroy_old=true --yes; rc_is 1
has err "has KCV"; has err "the store's old master key: not destroyed"
check "the other key labelled MK2 is still there" [ "$(lua "print(#s:find_all({CKA_LABEL='MK2'}))")" = "1" ]
lua "s:find_all({CKA_LABEL='MK2'})[1]:destroy(); s:find_all({CKA_LABEL='MK2-real'})[1]:set{CKA_LABEL='MK2'}"
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK3 destroy_old=true --yes; rc_is 0
check "MK2 is destroyed" [ "$(lua "print(#s:find_all({CKA_LABEL='MK2'}))")" = "0" ]
# Run again (as after a kill once the old key was destroyed): nothing left to destroy, exit 0.
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=MK3 destroy_old=true --yes; rc_is 0
has err "the old master key MK2 is already destroyed"
check "every blob opens under MK3" [ "$(kcvs_now)" = "$(cat "$work/kcvs")" ]

# ---- bad input ----
h run ep11/master-key-migrate token="$TOK" store="$STORE" new=NOPE; rc_is 1
has err "0 keys are labelled NOPE"
h run ep11/master-key-migrate token="$TOK" store="$work/nostore" new=MK1; rc_is 1
has err "nostore is not a blob store (it has no store.json)"
h run ep11/master-key-migrate token="$TOK" store="$STORE" action=cancel; rc_is 1
has err "no re-encipherment to cancel"

finish
