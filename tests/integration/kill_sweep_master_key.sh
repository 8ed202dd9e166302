#!/usr/bin/env bash
# kill_sweep_master_key: DESIGN invariants 1, 2 and 5 for a master-key re-encipherment
# (ep11/master-key-migrate new=MK2 destroy_old=true --yes: preflight, step 3 the verified
# backup, step 4 every blob re-wrapped, step 5 activation, then the old key destroyed) after
# kill -9 and `hsmsh resume JOURNAL --yes` (a kill before the journal's first line: the
# documented re-run), through tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB) on a SoftHSM2
# token in /dev/shm. A store of three blobs under MK1 (AES-128, AES-256, a 32-byte generic
# secret); the run is killed before and after EVERY PKCS#11 call index (all of them, in CI:
# the backup's verification, each re-wrap, the store's reads, the old key's search and
# destruction, the closing calls; activation itself makes no PKCS#11 call, so it is reached
# by the kills just before and after it), each run resumed, and after every resume the
# oracle below (SoftHSM2 directly): the store is on MK2, holds each blob exactly once, no
# objects.new/objects.old left, every backup a whole copy of the store as it was; each blob
# unwraps under MK2 to a key whose every attribute equals that of the same blob unwrapped
# under MK1 before the run (but the documented forced ones, hard-coded), with the original
# key's value (the original's ciphertext decrypts, the original's HMAC is the same); the
# token holds MK2 unchanged, MK1 destroyed, nothing else.
# Usage: bash kill_sweep_master_key.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
NAME=kill_sweep_master_key
# shellcheck source=kill_sweep.bash
source "$(dirname "${BASH_SOURCE[0]}")/kill_sweep.bash" "$@"
KS_RESUME=(--yes)

# mk.lua make TOKEN STORE OUT | check TOKEN STORE OUT EVENTS: the fixture, and the oracle.
# OUT (made by make): per blob, the attributes of its key unwrapped under MK1, a zero block
# encrypted (AES) or an HMAC (generic secret) by the original key; MK2's attributes and KCV.
cat > "$work/mk.lua" <<'LUA'
local hsm = require("hsm")
local bs = require("hsm.blobstore")
local json = require("hsm.json")
local FORCED = {CKA_LOCAL = true, CKA_ALWAYS_SENSITIVE = true, CKA_NEVER_EXTRACTABLE = true,
                CKA_UNIQUE_ID = true, CKA_KEY_GEN_MECHANISM = true}   -- DESIGN.md invariant 5
local function show(v)
  if type(v) == "string" then return v:match("^CK[A-Z]_[%w_]+$") and v or "x" .. hsm.hex(v)
  elseif type(v) == "table" then
    local l = {}
    for k, x in pairs(v) do l[#l + 1] = (type(k) == "number" and "" or tostring(k) .. ":") .. show(x) end
    table.sort(l)
    return "{" .. table.concat(l, ",") .. "}"
  end
  return tostring(v)
end
local function canon(o)
  local t = {}
  for k, v in pairs(assert(o:attrs())) do t[k] = show(v) end
  return t
end
local DATA = ("kill sweep block"):rep(2)
local function proof(s, k)
  if k.key_type == "CKK_GENERIC_SECRET" then return hsm.hex(assert(s:sign("CKM_SHA256_HMAC", k, DATA))) end
  return hsm.hex(assert(s:encrypt("CKM_AES_ECB", k, DATA:sub(1, 16))))
end
local mode, uri, store, out = arg[1], arg[2], arg[3], arg[4]
local s = assert(hsm.token(uri))
if mode == "make" then
  for _, l in ipairs({"MK1", "MK2"}) do
    assert(s:generate{type = "AES", bits = 256, label = l, CKA_WRAP = true, CKA_UNWRAP = true, CKA_ENCRYPT = true})
  end
  bs.create(store, s, bs.master_key(s, "MK1"))
  local rec = {blobs = {}}
  local kinds = {{"CKM_AES_KEY_GEN", 16, {CKA_ENCRYPT = true, CKA_DECRYPT = true}},
                 {"CKM_AES_KEY_GEN", 32, {CKA_ENCRYPT = true, CKA_DECRYPT = true}},
                 {"CKM_GENERIC_SECRET_KEY_GEN", 32, {CKA_SIGN = true, CKA_VERIFY = true}}}
  for i, kd in ipairs(kinds) do
    local t = {CKA_TOKEN = false, CKA_EXTRACTABLE = true, CKA_VALUE_LEN = kd[2], CKA_LABEL = "key" .. i}
    for k, v in pairs(kd[3]) do t[k] = v end
    local k = assert(s:generate_key(kd[1], t))
    bs.put(store, s, k, "key" .. i)
    local back = bs.get(store, s, "key" .. i)
    rec.blobs["key" .. i] = {proof = proof(s, k), attrs = canon(back)}
  end
  local mk2 = bs.master_key(s, "MK2")
  rec.mk2 = {attrs = canon(mk2), kcv = mk2:kcv()}
  local f = assert(io.open(out, "w")); f:write(json.encode(rec)); f:close()
  os.exit(0)
end
local bad = 0
local function FAIL(fmt, ...) bad = bad + 1; print("FAIL " .. fmt:format(...)) end
local f = assert(io.open(out)); local rec = json.decode(f:read("a")); f:close()
-- the token: MK2 unchanged, MK1 destroyed, nothing else
local objs = assert(s:objects())
if #objs ~= 1 then
  local l = {}
  for _, o in ipairs(objs) do l[#l + 1] = tostring(o:get("CKA_LABEL")) end
  FAIL("the token holds %d objects (%s), expected MK2 alone", #objs, table.concat(l, ","))
end
local mk2
for _, o in ipairs(objs) do if o:get("CKA_LABEL") == "MK2" then mk2 = o end end
if not mk2 then FAIL("MK2 is gone") else
  local now = canon(mk2)
  for k, v in pairs(rec.mk2.attrs) do if now[k] ~= v then FAIL("MK2's %s changed: %s, was %s", k, tostring(now[k]), v) end end
  for k in pairs(now) do if rec.mk2.attrs[k] == nil then FAIL("MK2 has a new attribute %s", k) end end
end
-- the store
local ok, st = pcall(bs.state, store)
if not ok then FAIL("the store's state: %s", tostring(st)) else
  if st.state ~= "normal" or st.mk.label ~= "MK2" or st.mk.kcv ~= rec.mk2.kcv then
    FAIL("the store is %s on %s (KCV %s), expected normal on MK2 (KCV %s)", tostring(st.state), tostring(st.mk.label), tostring(st.mk.kcv), rec.mk2.kcv)
  end
  if hsm.core.stat(store .. "/objects.new") or hsm.core.stat(store .. "/objects.old") then FAIL("objects.new or objects.old left in the store") end
  local names = bs.names(store)
  local want = {}
  for n in pairs(rec.blobs) do want[#want + 1] = n end
  table.sort(want)
  if table.concat(names, ",") ~= table.concat(want, ",") then FAIL("the store holds %s, expected %s", table.concat(names, ","), table.concat(want, ",")) end
  if mk2 then
    for _, n in ipairs(names) do
      local r = rec.blobs[n]
      local k, err = bs.get(store, s, n)
      if not k then FAIL("%s does not unwrap under MK2: %s", n, tostring(err))
      elseif r then
        local now = canon(k)
        for a, v in pairs(r.attrs) do
          if now[a] ~= v and not FORCED[a] then FAIL("%s: attribute %s is %s, was %s under MK1", n, a, tostring(now[a]), v) end
        end
        for a, v in pairs(now) do
          if r.attrs[a] == nil and not FORCED[a] then FAIL("%s: a new attribute %s=%s", n, a, v) end
        end
        local p = proof(s, k)
        if p ~= r.proof then FAIL("%s: not the original key (its proof %s, the original's %s)", n, p, r.proof) end
      end
    end
  end
end
if bad == 0 then print("OK") end
os.exit(bad == 0 and 0 or 1)
LUA

ks_fixture() {
  mk_token ep11 || { fail "softhsm2-util --init-token"; return 1; }
  "$HSMSH" "$work/mk.lua" make "$(u ep11)" "$I/files/bs" "$work/mk.json" > "$work/mk.out" 2>&1 ||
    { fail "making the store: $(show "$work/mk.out")"; return 1; }
  cp -a "$I/files/bs" "$work/bs.before"     # what every backup must be
  check "the store holds 3 blobs" [ "$(ls "$I/files/bs/objects" | wc -l)" -eq 3 ]
}
ks_run() {
  { HSMSH_FAULT=$1 "$HSMSH" run ep11/master-key-migrate token="$(u ep11 fault)" store="$L/files/bs" new=MK2 \
      destroy_old=true --yes --json --journal "$2" > "$L/out" 2> "$L/err" < /dev/null; } 2> /dev/null
  rc=$?
}
ks_check() {
  local what=$1 ok=1 b nb=0
  if ! "$HSMSH" "$work/mk.lua" check "$(u ep11)" "$L/files/bs" "$work/mk.json" > "$L/oracle.out" 2>&1; then
    fail "$what: $(grep -v '^OK' "$L/oracle.out" | head -n 8 | cut -c1-300 | tr '\n' '|')"; ok=0
  fi
  for b in "$L"/files/bs.backup-*; do
    [ -e "$b" ] || continue
    nb=$((nb + 1))
    diff -r "$work/bs.before" "$b" > /dev/null || { fail "$what: backup $b is not the store as it was"; ok=0; }
  done
  [ "$nb" -ge 1 ] || { fail "$what: no backup of the store"; ok=0; }
  grep -q '"event":"error"' "$L/out" && { fail "$what: the resume's events hold an error: $(show "$L/out")"; ok=0; }
  [ $ok -eq 1 ] && pass
  [ $ok -eq 1 ]
}
ks_main
