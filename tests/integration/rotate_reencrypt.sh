#!/usr/bin/env bash
# rotate_reencrypt: the recipe generic/rotate-reencrypt end to end on two SoftHSM2 tokens. A
# non-extractable AES key on the source protects three sealed files; the recipe makes a new
# key with the same attributes on the destination and re-encrypts the files into another
# directory. Checked: outputs open with the new key to the original plaintext, originals stay
# byte-identical, --dry-run writes nothing, a re-run changes nothing (no second key), resume
# re-creates a deleted output, a tampered input fails alone (exit 1), parameter errors are one
# clear line with nothing written, and (with $HSMSH_FAULT_LIB) a device failure rolls back
# (exit 3) and a kill -9 during key generation or re-encryption resumes with one key.
# Usage: bash rotate_reencrypt.sh /abs/path/to/hsmsh
set -u
NAME=rotate_reencrypt
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}   # before common.bash changes directory
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
# summary_is R S F: the --json summary says reencrypted=R skipped=S failed=F.
summary_is() {
  local got
  got=$(python3 -c 'import json,sys
s=[l for l in map(json.loads, filter(str.strip, open(sys.argv[1]))) if l.get("event")=="summary"]
print("%s/%s/%s" % ((s[-1]["reencrypted"], s[-1]["skipped"], s[-1]["failed"]) if s else ("none",)*3))' out 2>&1)
  if [ "$got" = "$1/$2/$3" ]; then pass
  else fail "$cmd: summary reencrypted/skipped/failed = $got, expected $1/$2/$3"; fi
}
# file_status NAME STATUS: the --json line of that file has that status.
file_status() {
  local got
  got=$(python3 -c 'import json,sys
f=[l for l in map(json.loads, filter(str.strip, open(sys.argv[1]))) if l.get("event")=="file" and l["path"].endswith("/"+sys.argv[2])]
print(f[-1]["status"] if f else "none")' out "$1" 2>&1)
  if [ "$got" = "$2" ]; then pass; else fail "$cmd: $1 has status $got, expected $2"; fi
}
empty_dir() {  # empty_dir DIR: nothing in it, hidden files included
  if [ -z "$(ls -A "$1")" ]; then pass; else fail "$cmd: $1 is not empty: $(ls -A "$1" | tr '\n' ' ')"; fi
}
# t SUBCOMMAND ARGS...: the Lua helper below; prints its answer.
t() { "$HSMSH" "$work/tool.lua" "$@" 2>&1; }

cat > tool.lua <<'EOF'
-- Test helper: keys, sealing, opening and attribute comparison through hsmsh itself.
local hsm = require("hsm")
local sealed = require("hsm.sealed")
local attrs = require("hsm.attrs")
local cmd = arg[1]
local function aes(s, label)
  local out = {}
  for _, k in ipairs(assert(s:find_all({CKA_LABEL = label}))) do
    if k.key_type == "CKK_AES" then out[#out + 1] = k end
  end
  return out
end
if cmd == "keys" then            -- keys URI LABEL: "N kcv1 kcv2 ..."
  local s = hsm.token(arg[2])
  local ks = aes(s, arg[3])
  local kcvs = {}
  for i, k in ipairs(ks) do kcvs[i] = k:kcv() end
  print(#ks .. (#ks > 0 and " " .. table.concat(kcvs, " ") or ""))
elseif cmd == "objects" then     -- objects URI: how many objects the token holds
  print(#assert(hsm.token(arg[2]):find_all({})))
elseif cmd == "mkkey" then       -- mkkey URI LABEL EXTRACTABLE [ID]
  local s = hsm.token(arg[2])
  s:generate{type = "AES", bits = 256, label = arg[3], id = arg[5] or "\1\2", CKA_ENCRYPT = true,
             CKA_DECRYPT = true, CKA_EXTRACTABLE = arg[4] == "true", CKA_DERIVE = true}
  print("ok")
elseif cmd == "seal" then        -- seal URI LABEL CHUNK IN OUT
  local s = hsm.token(arg[2])
  local k = assert(aes(s, arg[3])[1])
  print(assert(sealed.seal(s, k, arg[5], arg[6], {chunk = tonumber(arg[4])})).sha256)
elseif cmd == "open" then        -- open URI LABEL KCV IN OUT: with the key of that label and KCV
  local s = hsm.token(arg[2])
  for _, k in ipairs(aes(s, arg[3])) do
    if k:kcv() == arg[4] then
      local r, err = sealed.open(s, k, arg[5], arg[6])
      print(r and "ok" or err)
      return
    end
  end
  print("no key " .. arg[3] .. " " .. arg[4])
elseif cmd == "header" then      -- header FILE FIELD
  print((assert(sealed.inspect(arg[2])))[arg[3]])
elseif cmd == "compare" then     -- compare URI1 KCV1 URI2 KCV2 LABEL: attribute differences
  local function find(uri, kcv)
    for _, k in ipairs(assert(hsm.token(uri):find_all({CKA_CLASS = "CKO_SECRET_KEY"}))) do
      if k:kcv() == kcv then return k end
    end
    error("no key with kcv " .. kcv)
  end
  local skip = {CKA_LOCAL = 1, CKA_KEY_GEN_MECHANISM = 1, CKA_ALWAYS_SENSITIVE = 1,
                CKA_NEVER_EXTRACTABLE = 1, CKA_UNIQUE_ID = 1, CKA_CHECK_VALUE = 1}
  local out = {}
  for _, d in ipairs(attrs.diff(find(arg[2], arg[3]):attrs(), find(arg[4], arg[5]):attrs())) do
    if not skip[d.name] then out[#out + 1] = d.name .. "=" .. attrs.show(d.to) end
  end
  print(#out == 0 and "same" or table.concat(out, " "))
end
EOF

softhsm2-util --init-token --free --label src --so-pin 12345678 --pin 1234 > setup.out 2>&1 &&
softhsm2-util --init-token --free --label dst --so-pin 12345678 --pin 1234 >> setup.out 2>&1 ||
  { fail "setup: tokens: $(show setup.out)"; finish; }
printf '1234\n' > pin
SRC="pkcs11:token=src?pin-source=file:$work/pin"
DST="pkcs11:token=dst?pin-source=file:$work/pin"
PV='pkcs11:token=%s?pin-value=1234'
# shellcheck disable=SC2059
SRCV=$(printf "$PV" src) DSTV=$(printf "$PV" dst)

# ---- the old key and three sealed files (1 byte, empty, 300000 bytes in 4 KiB chunks) ----
check "a non-extractable AES key on src" [ "$(t mkkey "$SRCV" data false)" = ok ]
OLD=$(t keys "$SRCV" data | cut -d' ' -f2)
mkdir -p plain in reenc
head -c 1 /dev/urandom > plain/1-small
: > plain/2-empty
head -c 300000 /dev/urandom > plain/3-big
for f in 1-small 2-empty 3-big; do t seal "$SRCV" data 4096 "plain/$f" "in/$f.sealed" > /dev/null; done
check "three sealed inputs" [ "$(ls in | wc -l)" = 3 ]
(cd in && sha256sum ./*) > inputs.sha256
inputs_intact() { check "$cmd: the original sealed files are byte-identical" \
  bash -c "cd in && sha256sum --quiet -c ../inputs.sha256"; }
RUN=(run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=data files=in out=reenc)

# ---- --dry-run: a plan, nothing written ----
h "${RUN[@]}" --dry-run; rc_is 0
has err "re-encrypt"; has err "3-big.sealed"; has err "non-extractable"
empty_dir reenc
check "--dry-run makes no key on dst" [ "$(t objects "$DSTV")" = 0 ]
inputs_intact
h "${RUN[@]}" --dry-run --json; rc_is 0
check "--dry-run --json: one plan line per file" [ "$(grep -c '"event":"plan"' out)" = 3 ]

# ---- the real run ----
h "${RUN[@]}" --journal J --json; rc_is 0; summary_is 3 0 0
for f in 1-small 2-empty 3-big; do file_status "$f.sealed" reencrypted; done
inputs_intact
keys=$(t keys "$DSTV" data); NEW=$(echo "$keys" | cut -d' ' -f2)
check "dst holds exactly one key labelled data (got '$keys')" [ "$(echo "$keys" | cut -d' ' -f1)" = 1 ]
check "the new key is not the old key ($NEW vs $OLD)" [ -n "$NEW" -a "$NEW" != "$OLD" ]
diffs=$(t compare "$SRCV" "$OLD" "$DSTV" "$NEW")
check "the new key has the old key's attributes (differences: $diffs)" [ "$diffs" = same ]
check "the new key is non-extractable" \
  [ "$("$HSMSH" -e "print(require('hsm').token('$DSTV'):find{label='data'}.extractable)")" = false ]
mkdir -p back
for f in 1-small 2-empty 3-big; do
  check "reenc/$f.sealed names the new key" [ "$(t header "reenc/$f.sealed" kcv)" = "$NEW" ]
  r=$(t open "$DSTV" data "$NEW" "reenc/$f.sealed" "back/$f")
  check "reenc/$f.sealed opens with the new key ($r)" [ "$r" = ok ]
  check "reenc/$f.sealed holds the plaintext of in/$f.sealed" cmp -s "plain/$f" "back/$f"
  r=$(t open "$SRCV" data "$OLD" "reenc/$f.sealed" "back/$f.old")
  check "reenc/$f.sealed does not open with the old key ($r)" \
    bash -c "grep -q 'sealed under key kcv $NEW' <<< '$r'"
done
check "the journal has a done line per file" [ "$(grep -c '"step":"done"' J)" = 3 ]
check "the journal holds no PIN" bash -c "! grep -q 1234 J"
(cd reenc && sha256sum ./*) > outputs.sha256

# ---- a re-run changes nothing ----
h "${RUN[@]}" --json; rc_is 0; summary_is 0 3 0
check "re-run: still one key labelled data on dst" [ "$(t keys "$DSTV" data | cut -d' ' -f1)" = 1 ]
check "re-run: outputs unchanged" bash -c "cd reenc && sha256sum --quiet -c ../outputs.sha256"
inputs_intact

# ---- resume after losing one output: just that one is made again ----
rm reenc/2-empty.sealed
h resume J --json; rc_is 0; summary_is 1 2 0
file_status 2-empty.sealed reencrypted; file_status 3-big.sealed skipped
check "resume: still one key labelled data on dst" [ "$(t keys "$DSTV" data | cut -d' ' -f1)" = 1 ]
r=$(t open "$DSTV" data "$NEW" reenc/2-empty.sealed back/2-empty.again)
check "resume: the re-created output opens ($r)" [ "$r" = ok ]
grep -v 2-empty outputs.sha256 > others.sha256
check "resume: the other outputs are untouched" bash -c "cd reenc && sha256sum --quiet -c ../others.sha256"
inputs_intact

# ---- a tampered input fails alone ----
mkdir -p in2 out2
cp in/* in2/
python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[10000]^=1; open(p,"wb").write(d)' \
  in2/3-big.sealed
cp in2/3-big.sealed tampered.copy
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=data files=in2 out=out2 label=data-2 --json
rc_is 1; summary_is 2 0 1
file_status 3-big.sealed failed; file_status 1-small.sealed reencrypted
has out "chunk 3 fails authentication"
check "the failed file has no output" [ ! -e out2/3-big.sealed ]
check "no temporary file is left in out2 ($(ls -A out2 | tr '\n' ' '))" [ "$(ls -A out2 | wc -l)" = 2 ]
check "the tampered input is left as it was" cmp -s in2/3-big.sealed tampered.copy

# ---- parameter errors: one clear line, exit 1 or 2, nothing written ----
mkdir -p out3
objects_before=$(t objects "$DSTV")
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=data files=in out=out3 bogus=1; rc_is 1; has err "unknown parameter 'bogus'"; one_line
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" files=in out=out3; rc_is 1
has err "missing parameter key"; one_line
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=nope files=in out=out3; rc_is 1
has err "no secret AES key labelled 'nope'"; one_line
t mkkey "$SRCV" twin false > /dev/null; t mkkey "$SRCV" twin false > /dev/null
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=twin files=in out=out3; rc_is 1
has err "2 secret AES keys are labelled 'twin'"; one_line
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=data files=in out=in; rc_is 1
has err "is the files directory"; one_line
: > notadir
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=data files=in out=notadir; rc_is 1
has err "out=notadir is not a directory"; one_line
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=data files=plain out=out3; rc_is 1
has err "none of the 3 file(s)"; has err "not a sealed file (bad magic)"
empty_dir out3
check "parameter errors make no key on dst" [ "$(t objects "$DSTV")" = "$objects_before" ]

# ---- an extractable key: the plan says generic/migrate would do, then re-encrypts ----
t mkkey "$SRCV" exkey true > /dev/null
mkdir -p in4 out4
t seal "$SRCV" exkey 1024 plain/1-small in4/x.sealed > /dev/null
h run generic/rotate-reencrypt "from=$SRC" "to=$DST" key=exkey files=in4 out=out4; rc_is 0
has err "generic/migrate"
check "out4/x.sealed written" [ -s out4/x.sealed ]

# ---- the same token, a new label ----
mkdir -p out5
h run generic/rotate-reencrypt "from=$SRC" "to=$SRC" key=data files=in out=out5 label=data-v2 --json
rc_is 0; summary_is 3 0 0
check "src holds one key labelled data-v2" [ "$(t keys "$SRCV" data-v2 | cut -d' ' -f1)" = 1 ]
h run generic/rotate-reencrypt "from=$SRC" "to=$SRC" key=data files=in out=out5 label=data-v2 --json
rc_is 0; summary_is 0 3 0
check "same token, re-run: still one data-v2" [ "$(t keys "$SRCV" data-v2 | cut -d' ' -f1)" = 1 ]
inputs_intact

# ---- faults through libfaultp11 ($HSMSH_FAULT_LIB): rollback and kill -9 + resume ----
if [ -n "$FLIB" ] && [ -f "$FLIB" ]; then
  export HSMSH_FAULT_MODULE=$MODULE
  FSRC="pkcs11:token=src?module-path=$FLIB&pin-source=file:$work/pin"
  mkdir -p fk
  fault_token() {  # a fresh destination token named $1
    softhsm2-util --init-token --free --label "$1" --so-pin 12345678 --pin 1234 > /dev/null 2>&1
    printf 'pkcs11:token=%s?module-path=%s&pin-source=file:%s/pin' "$1" "$FLIB" "$work"
  }
  fault_run() {  # fault_run RULE DST OUT [JOURNAL]: one run with the rule active
    cmd="HSMSH_FAULT='$1' hsmsh run generic/rotate-reencrypt ... to=$2 out=$3"
    # (in a subshell, whose stderr gets bash's "Killed" notice)
    (HSMSH_FAULT=$1 "$HSMSH" run generic/rotate-reencrypt "from=$FSRC" "to=$2" key=data files=in \
      "out=$3" --journal "${4:-$work/J-$3}" < /dev/null; exit $?) > out 2> err
    rc=$?
  }

  # A device error while re-encrypting the third file: the run stops, removes the two outputs
  # it wrote and the key it made (exit 3), and leaves the originals alone.
  FD=$(fault_token fdev); mkdir -p outf
  fault_run 'C_Encrypt:60:CKR_DEVICE_ERROR' "$FD" outf
  rc_is 3; has err "CKR_DEVICE_ERROR"
  empty_dir outf
  check "rollback: the new key is gone" [ "$(t objects "$(printf "$PV" fdev)")" = 0 ]
  inputs_intact

  # kill -9 right after the token generated the new key (its 2nd C_GenerateKey: the 1st is
  # the session-object probe), before the journal could say so: resume adopts that key.
  FG=$(fault_token fgen); mkdir -p outg
  fault_run 'kill:C_GenerateKey:2:after' "$FG" outg "$work/JG"
  rc_is 137
  check "killed after generation: one key on the token" \
    [ "$(t keys "$(printf "$PV" fgen)" data | cut -d' ' -f1)" = 1 ]
  h resume JG --json; rc_is 0; summary_is 3 0 0
  check "resume after kill: still exactly one key" \
    [ "$(t keys "$(printf "$PV" fgen)" data | cut -d' ' -f1)" = 1 ]

  # kill -9 in the middle of the big file: its temporary output is removed, the file redone.
  FE=$(fault_token fenc); mkdir -p oute
  fault_run 'kill:C_Encrypt:60' "$FE" oute "$work/JE"
  rc_is 137
  check "killed mid-file: a temporary file is left" bash -c "ls -A oute | grep -q '^\.3-big.sealed\..*\.tmp$'"
  h resume JE --json; rc_is 0; summary_is 1 2 0
  file_status 3-big.sealed reencrypted
  check "resume removed the temporary file ($(ls -A oute | tr '\n' ' '))" [ "$(ls -A oute | wc -l)" = 3 ]
  k=$(t keys "$(printf "$PV" fenc)" data)
  check "resume after kill mid-file: one key ($k)" [ "$(echo "$k" | cut -d' ' -f1)" = 1 ]
  r=$(t open "$(printf "$PV" fenc)" data "$(echo "$k" | cut -d' ' -f2)" oute/3-big.sealed back/3-big.fenc)
  check "the redone output opens ($r)" [ "$r" = ok ]
  check "the redone output holds the plaintext" cmp -s plain/3-big back/3-big.fenc
  inputs_intact
else
  fail "HSMSH_FAULT_LIB is not set (run through ctest): the fault and kill checks cannot run"
fi

finish
