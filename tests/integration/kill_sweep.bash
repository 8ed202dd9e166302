# kill_sweep.bash - sourced by the kill_sweep_*.sh scripts (not a test itself): kill -9 a
# workflow before and after each PKCS#11 call index, resume it, and check DESIGN invariants 1,
# 2 and 5 after every resume with an oracle that reads both tokens through SoftHSM2 directly.
#
# The calling script sets NAME, sources this file with its $1 (the hsmsh binary), defines
#   ks_fixture          makes the tokens in $I/tokens (SOFTHSM2_CONF=$I/softhsm2.conf is
#                       exported) and the workflow's files in $I/files, then the oracle's
#                       reference files in $work (ks_dump)
#   ks_run RULES JOURNAL  runs the workflow in lane $L through the fault module with
#                       HSMSH_FAULT=RULES (empty: none), --json into out, stderr into err;
#                       sets rc
#   ks_check WHAT       the oracle for lane $L after a resume (events: the resume's out);
#                       calls fail with what it found, returns non-zero on a violation
# and optionally KS_RESUME=(--yes) (arguments of `hsmsh resume`), KS_WINDOWED=1 (in CI, every
# index from each journaled intent to its done plus a stride elsewhere, instead of every
# index), KS_RESUME_SWEEP=1 (also kill the resume at its own call indices), then calls ks_main.
#
# Environment: KILL_SWEEP_WINDOWED=1 makes every sweep windowed (ctest sets it in sanitizer
# builds, where each run costs several times more: the full sweeps run in the plain build;
# the summary line says which was done). By hand: KILL_SWEEP_FULL=1 sweeps every index even
# where the test is windowed (bench/kill_sweep.sh); KILL_SWEEP_RESUME=1 adds the killed-resume sweep where the
# test has none (a workflow that journals secret-key intents: restore, image);
# KILL_SWEEP_STRIDE=N the stride outside the windows
# (default: the script's KS_STRIDE, else 8); KILL_SWEEP_JOBS=N lanes (default 2); KILL_SWEEP_TMP the tmpfs for the token
# directories (default /dev/shm; it must exist: nothing falls back silently).
set -u
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}   # before common.bash changes directory
KS_TMP=${KILL_SWEEP_TMP:-/dev/shm}
if [ ! -d "$KS_TMP" ] || [ ! -w "$KS_TMP" ]; then
  echo "FAIL: KILL_SWEEP_TMP=$KS_TMP is not a writable directory (a tmpfs for the token directories)"
  echo "$NAME: 0 passed, 1 failed"; exit 1
fi
export TMPDIR=$KS_TMP       # common.bash's mktemp -d: every token directory on the tmpfs
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
t0=$SECONDS
export LC_ALL=C
if [ -z "${HSMSH_FAULT_LIB:-}" ] || [ ! -f "$FLIB" ]; then
  fail "HSMSH_FAULT_LIB='${HSMSH_FAULT_LIB:-}' is not the built libfaultp11.so (ctest sets it;" \
    "by hand: HSMSH_FAULT_LIB=build/tests/fault/libfaultp11.so bash $0 build/hsmsh)"
  finish
fi
for tool in softhsm2-util cp awk; do
  command -v "$tool" > /dev/null || { fail "$tool is not installed"; finish; }
done
[ -f "$MODULE" ] || { fail "SoftHSM2 ($MODULE) is not installed"; finish; }
unset HSMSH_FAULT HSMSH_FAULT_COUNT HSMSH_FAULT_LOG
export HSMSH_FAULT_MODULE=$MODULE
KS_RESUME=()
KS_WINDOWED=${KS_WINDOWED:-0}
KS_RESUME_SWEEP=${KS_RESUME_SWEEP:-0}
[ "${KILL_SWEEP_RESUME:-0}" = 1 ] && KS_RESUME_SWEEP=1
STRIDE=${KILL_SWEEP_STRIDE:-${KS_STRIDE:-8}}
JOBS=${KILL_SWEEP_JOBS:-2}
[ "${KILL_SWEEP_WINDOWED:-0}" = 1 ] && KS_WINDOWED=1   # set by ctest in sanitizer builds
[ "${KILL_SWEEP_FULL:-0}" = 1 ] && KS_WINDOWED=0
I=$work/init
mkdir -p "$I/tokens" "$I/files"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$I" > "$I/softhsm2.conf"
printf '1234' > "$work/pin"
printf '12345678' > "$work/so"
mk_token() { softhsm2-util --init-token --free --label "$1" --pin 1234 --so-pin 12345678 > /dev/null; }
show() { printf '%s' "$(head -c 600 "$1" 2> /dev/null | tr '\n' '|')"; }
# u TOKEN [fault]: its URI, through SoftHSM2 directly or through the fault module.
u() {
  if [ "${2:-}" = fault ]; then printf 'pkcs11:token=%s?module-path=%s&pin-source=file:%s/pin' "$1" "$FLIB" "$work"
  else printf 'pkcs11:token=%s?pin-source=file:%s/pin' "$1" "$work"; fi
}

# ---- the oracle for workflows that carry a token's objects onto another token ----
# oracle.lua dump URI: one sorted line per object: class/id/label, its check (KCV, SPKI
# fingerprint, SHA-256 of a data object's or certificate's value), every readable attribute.
# oracle.lua check SRC DST SRC_CANON DST0_CANON EVENTS: after a resume, prints one FAIL line
# per violation (exit 1) or "OK": the source is its canon, the destination's own objects
# (DST0) are unchanged, and every other destination object is one source object, exactly
# once (none lost: every source object but non-extractable keys and those matching
# $KS_SRC_SKIP; extra objects only those matching $KS_EXTRA, one each), attribute for
# attribute equal but for the list below; each secret key proven by value (the same KCV and
# an encryption on the source decrypted on the destination, or the same HMAC), each private
# key signing on the destination verified with the source's public key; and each key event
# of the resume (EVENTS, --json) names in `differs` exactly the attributes that differ.
cat > "$work/oracle.lua" <<'LUA'
local hsm = require("hsm")
local json = require("hsm.json")
-- The attributes that may differ, fixed here from the documentation (DESIGN.md invariant 5,
-- README "Checks"), not taken from hsm.attrs: set by the token when it unwraps or creates.
local FORCED = {CKA_LOCAL = true, CKA_ALWAYS_SENSITIVE = true, CKA_NEVER_EXTRACTABLE = true,
                CKA_UNIQUE_ID = true, CKA_KEY_GEN_MECHANISM = true}
-- SoftHSM2's documented quirks (DESIGN "Quirks": CKA_VALUE_LEN refused in an unwrap template;
-- hsm.profiles' softhsm2 entry): not recorded on the destination, which reads 0 or empty.
-- Allowed only that way, and reported as "(not recorded by the module)".
local UNRECORDED = {CKA_VALUE_LEN = true, CKA_CHECK_VALUE = true}
local SHORT = {CKO_SECRET_KEY = "secret-key", CKO_PRIVATE_KEY = "private-key",
               CKO_PUBLIC_KEY = "public-key", CKO_CERTIFICATE = "certificate", CKO_DATA = "data"}
local function show(v)
  if type(v) == "string" then
    if v:match("^CK[A-Z]_[%w_]+$") then return v end
    return "x" .. hsm.hex(v)
  elseif type(v) == "table" then   -- CKA_ALLOWED_MECHANISMS and templates: sets
    local l = {}
    for k, x in pairs(v) do l[#l + 1] = (type(k) == "number" and "" or tostring(k) .. ":") .. show(x) end
    table.sort(l)
    return "{" .. table.concat(l, ",") .. "}"
  end
  return tostring(v)
end
local function capture(uri)
  local s = assert(hsm.token(uri))
  local list = assert(s:objects())
  local out = {}
  for _, o in ipairs(list) do
    local a = assert(o:attrs())
    local cls = o.class
    local check
    if cls == "CKO_SECRET_KEY" then check = o:kcv()
    elseif cls == "CKO_DATA" or cls == "CKO_CERTIFICATE" then check = hsm.hex(hsm.core.sha256(a.CKA_VALUE or ""))
    else check = o:fingerprint() end
    local names, av = {}, {}
    for k, v in pairs(a) do names[#names + 1] = k; av[k] = show(v) end
    table.sort(names)
    local parts = {}
    for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. av[k] end
    local ref = ("%s/%s/%s"):format(SHORT[cls] or cls, hsm.hex(a.CKA_ID or ""), a.CKA_LABEL or "")
    out[#out + 1] = {obj = o, a = a, av = av, ref = ref, check = check or "none",
                     line = ref .. "\t" .. (check or "none") .. "\t" .. table.concat(parts, ";")}
  end
  table.sort(out, function(x, y) return x.line < y.line end)
  return s, out
end
local function lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end
local bad = 0
local function FAIL(fmt, ...) bad = bad + 1; print("FAIL " .. fmt:format(...)) end

if arg[1] == "dump" then
  local _, objs = capture(arg[2])
  for _, o in ipairs(objs) do print(o.line) end
  os.exit(0)
end
assert(arg[1] == "check", "usage: oracle.lua dump URI | check SRC DST SRC_CANON DST0_CANON EVENTS")
local ss, src = capture(arg[2])
local ds, dst = capture(arg[3])
-- 1. the source is unchanged (every attribute of every object, and its check values)
local canon = lines(arg[4])
local now = {}
for i, o in ipairs(src) do now[i] = o.line end
if table.concat(now, "\n") ~= table.concat(canon, "\n") then
  local was = {}
  for _, l in ipairs(canon) do was[l] = true end
  local is = {}
  for _, l in ipairs(now) do is[l] = true end
  local d = {}
  for _, l in ipairs(canon) do if not is[l] then d[#d + 1] = "-" .. l:sub(1, 160) end end
  for _, l in ipairs(now) do if not was[l] then d[#d + 1] = "+" .. l:sub(1, 160) end end
  FAIL("the source changed: %s", table.concat(d, " | "))
end
-- 2. the destination's own objects are there, unchanged, once each
local own = {}
for _, l in ipairs(lines(arg[5])) do own[l] = (own[l] or 0) + 1 end
local carried = {}
for _, o in ipairs(dst) do
  if own[o.line] and own[o.line] > 0 then own[o.line] = own[o.line] - 1
  else carried[#carried + 1] = o end
end
for l, n in pairs(own) do
  if n > 0 then FAIL("an object the destination had before is gone or changed: %s", l:sub(1, 200)) end
end
-- 3. what must arrive: every source object but non-extractable keys and the skipped labels
local skip = os.getenv("KS_SRC_SKIP") or ""
local want, order = {}, {}
for _, o in ipairs(src) do
  local label = o.a.CKA_LABEL or ""
  local keep = not (skip ~= "" and label:match(skip))
  if keep and (o.a.CKA_CLASS == "CKO_SECRET_KEY" or o.a.CKA_CLASS == "CKO_PRIVATE_KEY")
     and o.a.CKA_EXTRACTABLE == false then keep = false end
  if keep then
    if want[o.ref] then FAIL("the fixture has two source objects %s (the oracle needs them apart)", o.ref) end
    want[o.ref] = o; order[#order + 1] = o.ref
  end
end
local extra = os.getenv("KS_EXTRA") or ""
local got, extras = {}, 0
for _, o in ipairs(carried) do
  local label = o.a.CKA_LABEL or ""
  if extra ~= "" and label:match(extra) then extras = extras + 1
  elseif not want[o.ref] then
    FAIL("a destination object that is no source object (left over, half-made or transport): %s %s", o.ref, o.check)
  else
    got[o.ref] = got[o.ref] or {}
    table.insert(got[o.ref], o)
  end
end
if extra ~= "" and extras ~= 1 then FAIL("%d objects labelled like %s on the destination, expected 1", extras, extra) end
-- 4. each one once, attribute for attribute, and by value
local diffs = {}
local pubs = {}
for _, o in ipairs(src) do if o.a.CKA_CLASS == "CKO_PUBLIC_KEY" then pubs[o.a.CKA_ID or ""] = o.obj end end
local HMAC = {CKK_GENERIC_SECRET = "CKM_SHA256_HMAC"}
local ECB = {CKK_AES = {"CKM_AES_ECB", 16}, CKK_DES3 = {"CKM_DES3_ECB", 8}}
for _, ref in ipairs(order) do
  local s, l = want[ref], got[ref] or {}
  if #l == 0 then FAIL("LOST: %s (%s) is not on the destination", ref, s.check)
  elseif #l > 1 then FAIL("DUPLICATED: %s is on the destination %d times", ref, #l)
  else
    local d = l[1]
    local names, D = {}, {}
    for k in pairs(s.av) do names[k] = true end
    for k in pairs(d.av) do names[k] = true end
    for k in pairs(names) do
      local x, y = s.av[k], d.av[k]
      if x ~= y then
        if FORCED[k] then D[k] = "forced"
        elseif UNRECORDED[k] and (y == nil or y == "0" or y == "x" or y == "{}") then
          -- hsm.attrs counts a derived CKA_CHECK_VALUE that one side lacks as no difference
          -- (the check values are compared apart): `differs` may leave it out.
          D[k] = k == "CKA_CHECK_VALUE" and "unrecorded-derived" or "unrecorded"
        else FAIL("%s: attribute %s is %s on the source, %s on the destination", ref, k, tostring(x), tostring(y)) end
      end
    end
    diffs[ref] = D
    if s.check ~= d.check and not (d.check == "none" and D.CKA_CHECK_VALUE) then FAIL("%s: check value %s on the source, %s on the destination", ref, s.check, d.check) end
    local cls, kt = s.a.CKA_CLASS, s.a.CKA_KEY_TYPE
    if cls == "CKO_SECRET_KEY" then
      local data = assert(ss:random(32))
      if HMAC[kt] then
        local m1, e1 = ss:sign(HMAC[kt], s.obj, data)
        local m2, e2 = ds:sign(HMAC[kt], d.obj, data)
        if not m1 or m1 ~= m2 then FAIL("%s: HMAC differs (%s, %s)", ref, tostring(e1), tostring(e2)) end
      elseif ECB[kt] then
        local blk = data:sub(1, ECB[kt][2])
        local c, e1 = ss:encrypt(ECB[kt][1], s.obj, blk)
        local p, e2 = c and ds:decrypt(ECB[kt][1], d.obj, c)
        if not c or p ~= blk then FAIL("%s: the destination does not decrypt what the source encrypted (%s, %s)", ref, tostring(e1), tostring(e2)) end
      else FAIL("%s: no value proof for key type %s in the oracle", ref, tostring(kt)) end
      if s.check == "none" then FAIL("%s: a secret key without a KCV", ref) end
    elseif cls == "CKO_PRIVATE_KEY" then
      local pub = pubs[s.a.CKA_ID or ""]
      local mech, msg = nil, assert(ss:random(32))
      if kt == "CKK_RSA" then mech = "CKM_SHA256_RSA_PKCS"
      elseif kt == "CKK_EC" then mech = "CKM_ECDSA" end
      local sig = pub and mech and ds:sign(mech, d.obj, msg)
      if not (sig and ss:verify(mech, pub, msg, sig) == true) then
        FAIL("%s: a signature made on the destination does not verify with the source's public key", ref)
      end
    else
      local v = cls == "CKO_PUBLIC_KEY" and (s.av.CKA_EC_POINT or s.av.CKA_MODULUS) or s.av.CKA_VALUE
      if not v or #v < 3 then FAIL("%s: no value compared (the oracle read none)", ref) end
    end
  end
end
-- 5. the resume's events: each carried object once (migrated or skipped), differs exact
local evs, summary = {}, nil
local f = io.open(arg[6] or "", "r")
if not f then FAIL("no events file %s", tostring(arg[6])) else
  for l in f:lines() do
    local ok, e = pcall(json.decode, l)
    if ok and type(e) == "table" then
      if e.event == "key" then
        local ref = ("%s/%s/%s"):format(e.class, e.id or "", e.label or "")
        evs[ref] = evs[ref] or {}
        table.insert(evs[ref], e)
      elseif e.event == "summary" then summary = e end
    end
  end
  f:close()
  if not summary then FAIL("the resume printed no summary event")
  elseif summary.failed ~= 0 then FAIL("the resume's summary: %d failed", summary.failed) end
  for _, ref in ipairs(order) do
    local l = evs[ref] or {}
    if #l ~= 1 then FAIL("%s: %d key events in the resume, expected 1", ref, #l)
    elseif l[1].status ~= "migrated" and l[1].status ~= "skipped" then
      FAIL("%s: status %s in the resume (%s)", ref, tostring(l[1].status), tostring(l[1].reason))
    elseif diffs[ref] then
      local named = {}
      for item in (l[1].differs or ""):gmatch("[^,]+") do
        local n, note = item:match("^(CKA_[%w_]+)(.*)$")
        if not n then FAIL("%s: differs item '%s' is no attribute", ref, item)
        else
          named[n] = true
          if not FORCED[n] and not UNRECORDED[n] then FAIL("%s: differs names %s, which is not documented as allowed to differ", ref, n)
          elseif UNRECORDED[n] and note ~= "(not recorded by the module)" then FAIL("%s: differs names %s without saying it is not recorded", ref, item)
          elseif diffs[ref][n] == nil then FAIL("%s: differs names %s, which does not differ", ref, n) end
        end
      end
      for n in pairs(diffs[ref]) do
        if not named[n] and diffs[ref][n] ~= "unrecorded-derived" then FAIL("%s: %s differs but the event's differs ('%s') does not say so", ref, n, tostring(l[1].differs)) end
      end
    end
  end
end
if bad == 0 then print(("OK %d objects carried, %d on the source"):format(#order, #src)) end
os.exit(bad == 0 and 0 or 1)
LUA
ks_dump() { "$HSMSH" "$work/oracle.lua" dump "$1"; }
# ks_oracle WHAT SRC DST: the check above, in lane $L (events: $L/out); counts one check.
ks_oracle() {
  local what=$1
  if "$HSMSH" "$work/oracle.lua" check "$2" "$3" "$work/src.canon" "$work/dst0.canon" "$L/out" > "$L/oracle.out" 2>&1; then
    pass; return 0
  fi
  fail "$what: $(grep -v '^OK' "$L/oracle.out" | head -n 8 | cut -c1-400 | tr '\n' '|')"
  return 1
}

# ks_source URI: the small source every workflow carries, one object per code path: an AES
# key (wrapped; encrypt/decrypt), a generic secret (wrapped; HMAC), an EC P-256 pair (the
# private key wrapped as PKCS#8, the public key copied) with its certificate (copied), a data
# object without CKA_ID (copied) and a non-extractable AES key (blocked, never carried).
cat > "$work/source.lua" <<'LUA'
local hsm = require("hsm")
local lab = require("hsm.lab")
local s = assert(hsm.token(arg[1]))
local function sk(label, id, mech, extra)
  local t = {CKA_TOKEN = true, CKA_PRIVATE = true, CKA_LABEL = label, CKA_ID = id,
             CKA_SENSITIVE = true, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true}
  for k, v in pairs(extra or {}) do t[k] = v end
  assert(s:generate_key(mech, t))
end
sk("aes", "\1\1", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 16})
sk("fixed", "\1\2", "CKM_AES_KEY_GEN", {CKA_VALUE_LEN = 16, CKA_EXTRACTABLE = false})
sk("hmac", "\3\1", "CKM_GENERIC_SECRET_KEY_GEN", {CKA_VALUE_LEN = 32, CKA_ENCRYPT = false,
   CKA_DECRYPT = false, CKA_SIGN = true, CKA_VERIFY = true})
local pub, priv = assert(s:generate_key_pair("CKM_EC_KEY_PAIR_GEN",
  {CKA_TOKEN = true, CKA_LABEL = "ec", CKA_ID = "\6\1", CKA_VERIFY = true,
   CKA_EC_PARAMS = "\6\8\42\134\72\206\61\3\1\7"},
  {CKA_TOKEN = true, CKA_PRIVATE = true, CKA_LABEL = "ec", CKA_ID = "\6\1", CKA_SIGN = true,
   CKA_SENSITIVE = true, CKA_EXTRACTABLE = true}))
lab.certify(s, pub, priv, "ec", "\6\1")
assert(s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = false,
  CKA_LABEL = "cfg", CKA_APPLICATION = "kill_sweep", CKA_VALUE = "site configuration"}))
LUA
ks_source() {
  "$HSMSH" "$work/source.lua" "$1" > "$work/source.out" 2>&1 || { fail "making the source objects: $(show "$work/source.out")"; return 1; }
}

# ---- the sweep ----
# reset_lane: the lane's tokens and files as the fixture made them, no journal.
reset_lane() {
  rm -rf "$L/tokens" "$L/files" "$L/journal" "$L/kcount"
  cp -a "$I/tokens" "$I/files" "$L/" || fail "lane $L: cannot copy the fixture"
}
# (By hand: KILL_SWEEP_MAX=N keeps the first N points of each sweep, to try the test quickly.)
# windows TIMELINE: the call numbers where an object is in flight: from each journaled intent
# ("step":"create") to its "done", and, for a ref the journal had in flight before this
# process (a resume: TIMELINE is the killed run's journal, then the resume's calls and
# lines), from the step line before its "done" (where the resume settles it) to that done;
# with the call just before and just after each window.
windows() {
  awk 'function ref_of() { return match($0, /"ref":"[^"]*"/) ? substr($0, RSTART + 7, RLENGTH - 8) : "" }
       /^[0-9]/ { last = $1; buf = buf " " $1; next }
       /"event":"step"/ && /"step":"create"/ { inflight[ref_of()] = 1; buf = ""; if (last) print last; next }
       /"event":"step"/ && /"step":"done"/ {
         r = ref_of()
         if (r in inflight) {
           n = split(buf, a, " "); for (i = 1; i <= n; i++) print a[i]
           if (start) print start
           if (last) print last + 1
           delete inflight[r]
         }
         buf = ""; start = last }' "$1" | sort -un
}
# points TIMELINE T: the kill rules, before and after each call index: every index, or (in
# window mode) the windows, the first and last 3 calls, and every STRIDE-th index.
points() {
  local tl=$1 t=$2 n
  {
    if [ "$KS_WINDOWED" = 1 ]; then
      windows "$tl"
      for ((n = 1; n <= t; n++)); do
        if [ $((n % STRIDE)) -eq 1 ] || [ "$n" -le 3 ] || [ "$n" -gt $((t - 3)) ]; then echo "$n"; fi
      done
    else
      seq 1 "$t"
    fi
  } | awk -v t="$t" '$1 >= 1 && $1 <= t' | sort -un | awk '{print "kill:" $1; print "kill:" $1 ":after"}' |
    awk -v m="${KILL_SWEEP_MAX:-0}" 'm == 0 || NR <= m'
}
# kill_point RULE: a fresh lane, the workflow killed by RULE, `hsmsh resume JOURNAL` (or, when
# the kill came before the journal's first line, the documented re-run), then the oracle.
kill_point() {
  local rule=$1 n got
  reset_lane
  HSMSH_FAULT_COUNT=$L/kcount ks_run "$rule" "$L/journal"
  n=${rule#kill:}; n=${n%:after}
  if [ "$rc" -ne 137 ]; then
    bad=$((bad + 1)); fail "$rule: exit $rc, expected 137 (the kill at call $n of $T; stderr: $(show "$L/err"))"; return
  fi
  killed=$((killed + 1))
  got=$(awk '$1 == "total" {print $2}' "$L/kcount" 2> /dev/null)
  [ "${got:-}" = "$n" ] || fail "$rule: killed, but the count file says total ${got:-none}"
  ks_finish_after_kill "$rule"
}
# ks_finish_after_kill WHAT: resume the lane's journal (or re-run), then the oracle.
ks_finish_after_kill() {
  local what=$1
  if [ ! -s "$L/journal" ]; then
    no_journal=$((no_journal + 1))
    "$HSMSH" resume "$L/journal" "${KS_RESUME[@]}" --json > "$L/out" 2> "$L/err" < /dev/null
    rc=$?
    if [ "$rc" -eq 0 ] || ! grep -q "journal" "$L/err"; then
      fail "$what: resume of an empty journal: exit $rc, expected a refusal naming the journal ($(show "$L/err"))"
    fi
    ks_run "" "$L/journal"      # the documented re-run
  else
    if grep -q '"event":"end"' "$L/journal"; then after_end=$((after_end + 1))
    elif grep -q '"event":"step"' "$L/journal"; then in_steps=$((in_steps + 1))
    else before_steps=$((before_steps + 1)); fi
    { "$HSMSH" resume "$L/journal" "${KS_RESUME[@]}" --json > "$L/out" 2> "$L/err" < /dev/null; } 2> /dev/null
    rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    bad=$((bad + 1)); fail "$what, then resume: exit $rc (stderr: $(show "$L/err"); stdout: $(show "$L/out"))"
  fi
  ks_check "$what, then resume" || bad=$((bad + 1))
}
# count_run TAG: a clean run in lane $L through the fault module, its calls counted into
# $L/TAG.count and its PKCS#11 calls and journal lines in one timeline $L/TAG.tl (the fault
# module's log and the journal are both appended with O_APPEND, one write per line); sets T.
count_run() {
  local tag=$1
  rm -f "$L/$tag.count" "$L/$tag.tl"
  HSMSH_FAULT_COUNT=$L/$tag.count HSMSH_FAULT_LOG=$L/$tag.tl ks_run "" "$L/$tag.tl"
  if [ "$rc" -ne 0 ]; then fail "lane $lane: the clean count run: exit $rc ($(show "$L/err"))"; T=; return; fi
  cp "$L/out" "$L/$tag.events"
  T=$(awk '$1 == "total" {print $2}' "$L/$tag.count")
  [ -n "$T" ] || fail "lane $lane: no total in the count file"
}
# The killed-resume sweep: the workflow killed at one fixed point (just after the call that
# made the destination object of the first secret key's intent: an object in flight), the
# lane saved; then from that state each resume killed at RULE, resumed again, the oracle.
resume_point() {
  local rule=$1 n got
  rm -rf "$L/tokens" "$L/files" "$L/journal"
  cp -a "$L/rs/tokens" "$L/rs/files" "$L/rs/journal" "$L/"
  rm -f "$L/kcount"
  { HSMSH_FAULT=$rule HSMSH_FAULT_COUNT=$L/kcount "$HSMSH" resume "$L/journal" "${KS_RESUME[@]}" --json > "$L/out" 2> "$L/err" < /dev/null; } 2> /dev/null
  rc=$?
  n=${rule#kill:}; n=${n%:after}
  if [ "$rc" -ne 137 ]; then
    bad=$((bad + 1)); fail "resume killed by $rule: exit $rc, expected 137 (stderr: $(show "$L/err"))"; return
  fi
  rkilled=$((rkilled + 1))
  got=$(awk '$1 == "total" {print $2}' "$L/kcount" 2> /dev/null)
  [ "${got:-}" = "$n" ] || fail "resume killed by $rule: the count file says total ${got:-none}"
  ks_finish_after_kill "kill:$first_kill, resume killed by $rule"
}
sweep_lane() {
  lane=$1
  L=$work/lane$lane
  mkdir -p "$L"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$L" > "$L/softhsm2.conf"
  # Each lane's tokens are copies of the same tokens (the same serials): its own lock
  # directory (hsm.claim), so that the lanes do not wait on one another.
  export SOFTHSM2_CONF=$L/softhsm2.conf HSMSH_LOCK_DIR=$L/locks
  cd "$L" || return
  passed=0 failed=0 killed=0 rkilled=0 no_journal=0 before_steps=0 in_steps=0 after_end=0 bad=0
  local T0 R=0 nres=0 s0=$SECONDS s1 rule
  reset_lane
  count_run main
  [ -n "$T" ] || { echo "$passed $failed 0 0 0 0 0 0 0 0 0 0 0 0" > "$L/result"; return; }
  cp "$L/out" "$L/out.clean"
  ks_check "lane $lane: the clean run" || bad=$((bad + 1))
  T0=$T
  points "$L/main.tl" "$T" > "$L/points"
  awk -v j="$JOBS" -v l="$lane" '(NR - 1) % j == l' "$L/points" > "$L/mine"
  while read -r rule; do kill_point "$rule"; done < "$L/mine"
  local main="$killed $no_journal $before_steps $in_steps $after_end $bad"
  s1=$SECONDS
  if [ "$KS_RESUME_SWEEP" = 1 ]; then
    # the first kill: the last object-making call inside the first secret key's intent
    first_kill=$(awk '/^[0-9]/ { if (open && ($2 == "C_UnwrapKey" || $2 == "C_CopyObject" || $2 == "C_CreateObject")) m = $1; next }
      /"step":"create"/ && /"ref":"secret-key\// && !done1 { open = 1; next }
      /"step":"done"/ && open { open = 0; done1 = 1 }
      END { print m }' "$L/main.tl")
    if [ -z "$first_kill" ]; then fail "lane $lane: no object-making call in a secret key's intent"; else
      first_kill=$first_kill:after
      reset_lane
      ks_run "kill:$first_kill" "$L/journal"
      if [ "$rc" -ne 137 ]; then fail "kill:$first_kill: exit $rc, expected 137"; else
        rm -rf "$L/rs"; mkdir -p "$L/rs"
        cp -a "$L/tokens" "$L/files" "$L/journal" "$L/rs/"
        # the resume's own calls, counted, with its journal lines in one timeline
        cp "$L/journal" "$L/resume.tl"
        rm -f "$L/resume.count"
        HSMSH_FAULT_COUNT=$L/resume.count HSMSH_FAULT_LOG=$L/resume.tl "$HSMSH" resume "$L/resume.tl" "${KS_RESUME[@]}" --json > "$L/out" 2> "$L/err" < /dev/null
        rc=$?
        [ "$rc" -eq 0 ] || fail "lane $lane: the clean resume after kill:$first_kill: exit $rc ($(show "$L/err"))"
        R=$(awk '$1 == "total" {print $2}' "$L/resume.count")
        if [ -n "$R" ]; then
          points "$L/resume.tl" "$R" > "$L/rpoints"
          awk -v j="$JOBS" -v l="$lane" '(NR - 1) % j == l' "$L/rpoints" > "$L/rmine"
          while read -r rule; do nres=$((nres + 1)); resume_point "$rule"; done < "$L/rmine"
        else fail "lane $lane: the resume's count file has no total"; fi
      fi
    fi
  fi
  echo "$passed $failed $main $rkilled $((bad - ${main##* })) $T0 $(wc -l < "$L/points") ${R:-0} $(cat "$L/rpoints" 2> /dev/null | wc -l) $((s1 - s0)) $((SECONDS - s1))" > "$L/result"
}
ks_main() {
  export SOFTHSM2_CONF=$I/softhsm2.conf HSMSH_LOCK_DIR=$work/locks
  ks_fixture || { fail "the fixture"; finish; }
  [ "$failed" -eq 0 ] || finish
  local l tf=$SECONDS
  for ((l = 0; l < JOBS; l++)); do ( sweep_lane "$l" ) & done
  wait
  # result: passed failed | killed no_journal before_steps in_steps after_end bad (the run's
  # sweep) | rkilled rbad (the resume's) | T points R rpoints | seconds of each sweep
  local tot=(0 0 0 0 0 0 0 0 0 0) Ts=() Rs=() np=0 nr=0 sm=0 sr=0
  for ((l = 0; l < JOBS; l++)); do
    if [ -s "$work/lane$l/result" ]; then
      read -ra r < "$work/lane$l/result"
      for i in "${!tot[@]}"; do tot[i]=$((tot[i] + r[i])); done
      Ts+=("${r[10]}"); Rs+=("${r[12]}"); np=$((np + r[11])); nr=$((nr + r[13]))
      [ "${r[14]}" -gt "$sm" ] && sm=${r[14]}; [ "${r[15]}" -gt "$sr" ] && sr=${r[15]}
    else fail "lane $l of the kill sweep left no result"; fi
  done
  np=$((np / JOBS)) nr=$((nr / JOBS))   # (each lane lists all the points and sweeps its share)
  passed=$((passed + tot[0])) failed=$((failed + tot[1]))
  [ "$(printf '%s\n' "${Ts[@]}" | sort -u | wc -l)" -eq 1 ] ||
    echo "note: the lanes count different totals (${Ts[*]}): each swept its own numbering"
  local mode="every call index"
  [ "$KS_WINDOWED" = 1 ] && mode="the windows from each intent to its done, the first and last 3 calls and every ${STRIDE}th index"
  echo "$NAME: a run makes T=${Ts[0]:-?} PKCS#11 calls; swept $mode: $np kill points (before and after)," \
    "${tot[2]} killed, each resumed: journal ${tot[3]} empty (re-run), ${tot[4]} before the first step," \
    "${tot[5]} in the steps, ${tot[6]} after the end; ${tot[7]} with a violation; $sm s on $JOBS lanes"
  if [ "$KS_RESUME_SWEEP" = 1 ]; then
    echo "$NAME: the resume after a kill makes R=${Rs[0]:-?} calls; $nr kill points in it ($mode)," \
      "${tot[8]} killed, each resumed again; ${tot[9]} with a violation; $sr s"
    [ "${tot[8]}" -gt 0 ] || fail "no resume was killed"
  fi
  [ "${tot[2]}" -gt 0 ] || fail "no run was killed"
  echo "$NAME: total $((SECONDS - t0)) s (fixture $((tf - t0)) s)"
  finish
}
