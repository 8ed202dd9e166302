#!/usr/bin/env bash
# migrate_faults: DESIGN invariant 1 for generic/migrate ("no key is lost and none duplicated
# — also after kill -9 at any point and hsmsh resume") and its error handling, driven through
# the fault-injecting module tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB, set by ctest).
#
#  1. a small source token (AES-128/256, an AES wrapping key, DES3, RSA-2048 and EC P-256 pairs
#     with extractable private keys, a data object); the expected end state is taken once from
#     a clean migration into a scratch token (its --json events) and from the source itself;
#  2. one clean migration through the fault module counts its PKCS#11 calls (T) and logs them;
#  3. kill sweep: kill -9 at N (before and after the call) for N spread over 1..T and around
#     every call that writes the destination, then `hsmsh resume JOURNAL`; afterwards the
#     destination holds exactly the expected objects, each once, with the source's KCV /
#     fingerprint (private keys also sign, checked with their public key), no transport
#     leftovers on either token, and the source unchanged (inventory and attribute digest);
#     kills during a resume, and a last re-run that must skip everything;
#  4. injected errors: C_UnwrapKey / C_CreateObject failing after doing the work (recovered),
#     C_UnwrapKey failing before (that key fails, exit 1, nothing half-made, a re-run finishes
#     it), failed searches (exit != 0 with the CKR, never "0 objects"), a wrong PIN, a failed
#     transport key-pair generation (clear error, nothing written).
# The destination's state is read through SoftHSM2 directly (not through the fault module).
# Usage: bash migrate_faults.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
set -u
NAME=migrate_faults
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}   # before common.bash changes directory
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }
t0=$SECONDS

if [ -z "${HSMSH_FAULT_LIB:-}" ] || [ ! -f "$FLIB" ]; then
  fail "HSMSH_FAULT_LIB='${HSMSH_FAULT_LIB:-}' is not the built libfaultp11.so (ctest sets it;" \
    "by hand: HSMSH_FAULT_LIB=build/tests/fault/libfaultp11.so bash $0 build/hsmsh)"
  finish
fi
unset HSMSH_FAULT HSMSH_FAULT_COUNT HSMSH_FAULT_LOG
export HSMSH_FAULT_MODULE=$MODULE
# MIGRATE_FAULTS_POINTS=N caps the number of kill points (default: all selected, see below).
MAX_POINTS=${MIGRATE_FAULTS_POINTS:-1000}

printf '1234\n' > "$work/pin"
printf '0000\n' > "$work/badpin"
mk_token() { softhsm2-util --init-token --free --label "$1" --pin 1234 --so-pin 12345678 > /dev/null; }
# A fresh, empty destination token (SoftHSM2's own tool, not hsmsh).
reset_dst() {
  softhsm2-util --delete-token --token dst > /dev/null 2>&1
  mk_token dst || { fail "cannot re-create token dst"; finish; }
}
for t in src ref dst; do mk_token "$t" || { fail "softhsm2-util --init-token $t"; finish; }; done

FM="module-path=$FLIB&pin-source=file:$work/pin"
SRC="pkcs11:token=src?$FM"                  # through the fault module (shared instance)
DST="pkcs11:token=dst?$FM"
PSRC="pkcs11:token=src?pin-source=file:$work/pin"   # SoftHSM2 directly, for the checks
PDST="pkcs11:token=dst?pin-source=file:$work/pin"
PREF="pkcs11:token=ref?pin-source=file:$work/pin"
J=$work/journal
show() { printf '%s' "$(head -c 600 "$1" 2>/dev/null | tr '\n' '|')"; }

# h RULES ARGS...: runs hsmsh ARGS with HSMSH_FAULT=RULES (empty: none); sets $rc, files
# out/err, $cmd. Extra environment (HSMSH_FAULT_COUNT/LOG) may be exported by the caller.
h() {
  local rules=$1; shift
  cmd="${rules:+HSMSH_FAULT='$rules' }hsmsh $*"
  if [ -n "$rules" ]; then
    { HSMSH_FAULT=$rules "$HSMSH" "$@" > out 2> err < /dev/null; } 2> /dev/null
  else
    { "$HSMSH" "$@" > out 2> err < /dev/null; } 2> /dev/null
  fi
  rc=$?
}
migrate() { local rules=$1; shift; h "$rules" run generic/migrate from="$SRC" to="$DST" --json "$@"; }
rc_is() { if [ "$rc" -eq "$1" ]; then pass; else fail "$cmd: exit $rc, expected $1 (stderr: $(show err))"; fi; }
has() {  # has FILE TEXT
  if grep -qsF -- "$2" "$1"; then pass; else fail "$cmd: $1 lacks '$2' ($1: $(show "$1"))"; fi
}
lacks() {  # lacks FILE TEXT
  if grep -qsF -- "$2" "$1"; then fail "$cmd: $1 contains '$2' ($1: $(show "$1"))"; else pass; fi
}

# The --json output of a migration: jq-like queries in Python.
cat > "$work/ev.py" <<'EOF'
import json, sys
def lines(path):
    out = []
    for l in open(path):
        l = l.strip()
        if not l:
            continue
        try:
            out.append(json.loads(l))
        except ValueError:
            out.append({"event": "unparsable", "text": l})
    return out
cmd, path = sys.argv[1], sys.argv[2]
evs = lines(path)
keys = [e for e in evs if e.get("event") == "key"]
summ = [e for e in evs if e.get("event") == "summary"]
if cmd == "expected":      # class TAB id TAB label TAB check, one per key event
    for e in keys:
        print("\t".join([e.get("class", "?"), e.get("id", ""), e.get("label", ""),
                         e.get("kcv") or e.get("fingerprint") or "none"]))
elif cmd == "summary":     # migrated skipped blocked failed keyevents (or "none")
    if not summ:
        print("none")
    else:
        s = summ[-1]
        print(s.get("migrated"), s.get("skipped"), s.get("blocked"), s.get("failed"), len(keys))
elif cmd == "statuses":    # class/id/label status, sorted (duplicates show twice)
    for k in sorted("%s/%s/%s %s" % (e.get("class"), e.get("id"), e.get("label"), e.get("status"))
                    for e in keys):
        print(k)
elif cmd == "item":        # item PATH REF FIELD: FIELD of the one key event of class/id/label
    ref, field = sys.argv[3], sys.argv[4]
    m = [e for e in keys if "%s/%s/%s" % (e.get("class"), e.get("id"), e.get("label")) == ref]
    print(len(m) == 1 and str(m[0].get(field)) or "(%d events)" % len(m))
elif cmd == "order":       # class/id/label in the order of the key events
    for e in keys:
        print("%s/%s/%s" % (e.get("class"), e.get("id"), e.get("label")))
EOF
ev() { python3 "$work/ev.py" "$@"; }

# state.lua URI [fp]: one sorted line per token object of the token: class, ID, label, check
# (KCV; SPKI fingerprint, a private key borrowing its public key's; SHA-256 of a data
# object's value) and, for private keys, whether a signature verifies with the public key of
# the same ID. With "fp": a last line with hsm.migrate.fingerprint (every attribute).
cat > "$work/state.lua" <<'EOF'
local hsm = require("hsm")
local s = hsm.token(arg[1])
local list = assert(s:objects())
local short = {CKO_SECRET_KEY = "secret-key", CKO_PRIVATE_KEY = "private-key",
               CKO_PUBLIC_KEY = "public-key", CKO_CERTIFICATE = "certificate", CKO_DATA = "data"}
local pubs = {}
for _, o in ipairs(list) do
  if o.class == "CKO_PUBLIC_KEY" then pubs[o:get("CKA_ID") or ""] = o end
end
local lines = {}
for _, o in ipairs(list) do
  local cls, id = o.class, o:get("CKA_ID") or ""
  local check, func = nil, "-"
  if cls == "CKO_SECRET_KEY" then check = o:kcv()
  elseif cls == "CKO_DATA" or cls == "CKO_CERTIFICATE" then
    check = hsm.hex(hsm.core.sha256(o:get("CKA_VALUE") or ""))
  else check = o:fingerprint() end
  if cls == "CKO_PRIVATE_KEY" then
    local pub = pubs[id]
    if not check and pub then check = pub:fingerprint() end
    local mech, msg = nil, assert(s:random(32))
    if o.key_type == "CKK_RSA" then mech = "CKM_SHA256_RSA_PKCS"
    elseif o.key_type == "CKK_EC" then mech, msg = "CKM_ECDSA", hsm.core.sha256(msg) end
    if pub and mech then
      local sig = s:sign(mech, o, msg)
      func = (sig and s:verify(mech, pub, msg, sig) == true) and "sign-ok" or "sign-BAD"
    end
  end
  lines[#lines + 1] = table.concat({short[cls] or tostring(cls), hsm.hex(id),
    o:get("CKA_LABEL") or "", check or "none", func}, "\t")
end
table.sort(lines)
for _, l in ipairs(lines) do print(l) end
if arg[2] == "fp" then
  print(("#fingerprint %s %d"):format(require("hsm.migrate").fingerprint(s)))
end
EOF
state() { "$HSMSH" "$work/state.lua" "$@" 2>&1; }
inventory() { "$HSMSH" run generic/inventory token="$1" --json 2>&1 | sort; }

# ---- 1. the source, and the expected end state ----
cat > "$work/source.lua" <<'LUA'
local hsm = require("hsm")
local s = hsm.token(arg[1])
local function k(t) assert(s:generate(t)) end
k{type = "AES", bits = 128, label = "aes128", id = "\1\1", CKA_EXTRACTABLE = true,
  CKA_ENCRYPT = true, CKA_DECRYPT = true}
k{type = "AES", bits = 256, label = "aes256", id = "\1\2", CKA_EXTRACTABLE = true,
  CKA_ENCRYPT = true, CKA_DECRYPT = true}
k{type = "AES", bits = 256, label = "aeskek", id = "\1\3", CKA_EXTRACTABLE = true,
  CKA_WRAP = true, CKA_UNWRAP = true}
k{type = "DES3", label = "des3", id = "\2\1", CKA_EXTRACTABLE = true, CKA_ENCRYPT = true,
  CKA_DECRYPT = true}
k{type = "RSA", bits = 2048, label = "rsa", id = "\3\1", CKA_EXTRACTABLE = true}
k{type = "EC", curve = "P-256", label = "ec", id = "\4\1", CKA_EXTRACTABLE = true}
assert(s:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = false,
  CKA_LABEL = "cfg", CKA_APPLICATION = "migrate_faults", CKA_VALUE = "site configuration"})
LUA
"$HSMSH" "$work/source.lua" "$PSRC" > out 2> err || { fail "making the source keys: $(show err)"; finish; }

state "$PSRC" fp > src.state
inventory "$PSRC" > src.inv
grep -v '^#' src.state | cut -f1-4 > src.objects
NOBJ=$(wc -l < src.objects)
check "the source has 9 objects (got $NOBJ: $(show src.objects))" [ "$NOBJ" -eq 9 ]
check "every source private key signs (state: $(show src.state))" \
  [ "$(grep -c 'sign-ok' src.state)" -eq 2 ]

# The expected state: a clean migration into the scratch token ref (SoftHSM2 directly).
h "" run generic/migrate from="$PSRC" to="$PREF" --json
rc_is 0
check "clean migration into ref: summary $(ev summary out), expected $NOBJ 0 0 0 $NOBJ" \
  [ "$(ev summary out)" = "$NOBJ 0 0 0 $NOBJ" ]
ev expected out | sort > expected.objects
check "the clean migration's --json objects (class,id,label,check) are the source's" \
  diff -u src.objects expected.objects
grep -v '^#' src.state > expected.state
state "$PREF" > ref.state
check "the scratch destination holds the expected state" diff -u expected.state ref.state
ev order out > order.clean   # the plan order (the source's enumeration order)

# check_state WHAT: the destination holds exactly the expected objects (each once, same check
# values, private keys sign), no transport object on either token, the source unchanged.
check_state() {
  local what=$1 ok=1
  state "$PDST" > dst.state
  if ! diff -u expected.state dst.state > state.diff; then
    ok=0
    local dups
    dups=$(cut -f1-3 dst.state | sort | uniq -d | tr '\n' ' ')
    fail "$what: destination state differs from the expected${dups:+ (DUPLICATES: $dups)}:" \
      "$(grep '^[-+][^-+]' state.diff | tr '\n' '|')"
  fi
  state "$PSRC" fp > src.now
  inventory "$PSRC" > src.inv.now
  if ! cmp -s src.state src.now || ! cmp -s src.inv src.inv.now; then
    ok=0
    fail "$what: the source changed: $(diff src.state src.now | tr '\n' '|') $(diff src.inv src.inv.now | head -c 400 | tr '\n' '|')"
  fi
  if grep -q 'hsmsh-transport' dst.state src.now; then
    ok=0
    fail "$what: transport objects left behind: $(grep -h 'hsmsh-transport' dst.state src.now | tr '\n' '|')"
  fi
  [ $ok -eq 1 ] && pass
  return $((1 - ok))
}

# ---- 2. count the calls of a clean migration through the fault module ----
reset_dst
rm -f "$work/count" "$work/log" "$J"
HSMSH_FAULT_COUNT=$work/count HSMSH_FAULT_LOG=$work/log migrate "" --journal "$J"
rc_is 0
check "clean run through the fault module: summary $(ev summary out)" \
  [ "$(ev summary out)" = "$NOBJ 0 0 0 $NOBJ" ]
check_state "clean run through the fault module" || true
T=$(awk '$1 == "total" {print $2}' "$work/count")
check "the count file has a total (got '${T:-}')" [ -n "${T:-}" ]
[ -n "${T:-}" ] || finish
ev order out > order.fault
check "the plan order is the same through the fault module" cmp -s order.clean order.fault
cnt() { awk -v f="$1" '$1 == f {print $2}' "$work/count"; }
echo "a full migration makes T=$T PKCS#11 calls ($(cnt C_UnwrapKey) C_UnwrapKey, $(cnt C_CreateObject) C_CreateObject, $(cnt C_GetAttributeValue) C_GetAttributeValue)"

# ---- 3. kill sweep ----
# Points: evenly spaced over 1..T, and around every call that may write a token after the
# first search (C_UnwrapKey, C_CreateObject, C_SetAttributeValue, C_DestroyObject), before
# and after the call; the end (T, T:after) and beyond it (T+5: the run completes).
first_find=$(awk '$2 == "C_FindObjectsInit" {print $1; exit}' "$work/log")
{
  step=$(( (T + 24) / 25 ))
  for ((n = 1; n <= T; n += step)); do echo "kill:$n"; done
  awk -v f="$first_find" '$1 >= f && ($2 == "C_UnwrapKey" || $2 == "C_CreateObject" ||
      $2 == "C_SetAttributeValue") {print "kill:" $1; print "kill:" $1 ":after"}
    $1 >= f && $2 == "C_DestroyObject" {print "kill:" $1 ":after"}' "$work/log"
  echo "kill:2"; echo "kill:$T"; echo "kill:$T:after"; echo "kill:$((T + 5))"
} | awk '!seen[$0]++' | head -n "$MAX_POINTS" > points

killed=0 completed=0 no_journal=0 before_steps=0 in_steps=0 after_end=0 sweep_bad=0
while read -r rule; do
  reset_dst
  rm -f "$J" "$work/kcount"
  HSMSH_FAULT_COUNT=$work/kcount migrate "$rule" --journal "$J"
  n=${rule#kill:}; n=${n%:after}
  if [ "$rc" -eq 137 ]; then
    killed=$((killed + 1))
    got=$(awk '$1 == "total" {print $2}' "$work/kcount" 2> /dev/null)
    [ "${got:-}" = "$n" ] || fail "$rule: killed, but the count file says total ${got:-none}"
  elif [ "$rc" -eq 0 ] && [ "$n" -gt "$T" ]; then
    completed=$((completed + 1))
  else
    sweep_bad=$((sweep_bad + 1))
    fail "$cmd: exit $rc, expected 137 (kill point $n of $T; stderr: $(show err))"
    continue
  fi
  # Where the kill landed, as the journal tells it.
  if [ ! -s "$J" ]; then no_journal=$((no_journal + 1))
  elif grep -q '"event":"end"' "$J"; then after_end=$((after_end + 1))
  elif grep -q '"event":"step"' "$J"; then in_steps=$((in_steps + 1))
  else before_steps=$((before_steps + 1)); fi
  if [ -s "$J" ]; then
    h "" resume "$J" --json
    if [ "$rc" -ne 0 ] || [ "$(ev summary out | cut -d' ' -f4)" != 0 ]; then
      sweep_bad=$((sweep_bad + 1))
      fail "$rule then hsmsh resume: exit $rc, summary '$(ev summary out)' (stderr: $(show err); stdout: $(show out))"
    else pass; fi
    sum=$(ev summary out)
    # Every object exactly once in the resume's events, migrated or skipped.
    if [ "$(ev statuses out | grep -cE ' (migrated|skipped)$')" -ne "$NOBJ" ] ||
       [ "$(ev statuses out | wc -l)" -ne "$NOBJ" ]; then
      fail "$rule then resume: events $(ev statuses out | tr '\n' '|')"
    fi
  else
    # Killed before the journal's first line: resume cannot start, a new run must.
    h "" resume "$J" --json
    rc_is 1; has err "cannot read journal"
    migrate "" --journal "$J"
    rc_is 0
    sum=$(ev summary out)
  fi
  check_state "$rule, then resume (summary $sum)" || sweep_bad=$((sweep_bad + 1))
done < points
npoints=$(wc -l < points)
echo "kill sweep: $npoints kill points over T=$T calls: $killed killed, $completed ran to the end;" \
  "journal: $no_journal before it existed, $before_steps before the first step (setup/plan)," \
  "$in_steps during the migration steps, $after_end after its end event; $sweep_bad with a violation"

# Kills during the resume itself: kill a first run in the middle of the migration, kill its
# resume as it writes the destination, resume again.
mid=$(awk -v f="$first_find" '$1 >= f && $2 == "C_UnwrapKey" {u++; if (u == 6) {print $1; exit}}' "$work/log")
for second in "kill:C_UnwrapKey:2:after" "kill:C_UnwrapKey:4:after" "kill:C_CreateObject:1:after" \
              "kill:C_SetAttributeValue:1" "kill:C_DestroyObject:1:after"; do
  reset_dst; rm -f "$J"
  migrate "kill:${mid}:after" --journal "$J"
  rc_is 137
  h "$second" resume "$J" --json
  if [ "$rc" -ne 137 ] && [ "$rc" -ne 0 ]; then fail "$cmd: exit $rc (stderr: $(show err))"; fi
  first_rc=$rc
  h "" resume "$J" --json
  rc_is 0
  check "kill:${mid}:after, resume killed by $second (exit $first_rc), resume: summary $(ev summary out)" \
    [ "$(ev summary out | cut -d' ' -f4)" = 0 ]
  check_state "kill:${mid}:after, resume with $second, resume" || true
done

# After a resume, running the migration again skips everything and creates nothing.
reset_dst; rm -f "$J"
migrate "kill:$mid" --journal "$J"; rc_is 137
h "" resume "$J" --json; rc_is 0
migrate ""
rc_is 0
check "re-run after a resume: summary '$(ev summary out)', expected 0 $NOBJ 0 0 $NOBJ" \
  [ "$(ev summary out)" = "0 $NOBJ 0 0 $NOBJ" ]
check_state "re-run after a resume" || true
h "" resume "$J" --json   # resuming a finished run changes nothing either
rc_is 0
check "resume of a finished run: summary '$(ev summary out)', expected 0 $NOBJ 0 0 $NOBJ" \
  [ "$(ev summary out)" = "0 $NOBJ 0 0 $NOBJ" ]
check_state "resume of a finished run" || true
echo "kill sweep done in $((SECONDS - t0)) s"

# ---- 4. injected errors ----
# Which call is which key: the items run in the plan order; the transport self-test and each
# wrapped key make the same number of C_UnwrapKey calls (PER), the last of them the key
# itself; each copied object makes one C_CreateObject, the last ones of the run.
U=$(cnt C_UnwrapKey) C=$(cnt C_CreateObject)
mapfile -t ORDER < order.clean
wrapped=() copied=()
for r in "${ORDER[@]}"; do
  case $r in secret-key/*|private-key/*) wrapped+=("$r") ;; *) copied+=("$r") ;; esac
done
NW=${#wrapped[@]} NC=${#copied[@]}
PER=$((U / (NW + 1)))
check "C_UnwrapKey calls ($U) are a multiple of wrapped keys + self-test ($NW + 1)" [ $((U % (NW + 1))) -eq 0 ]
unwrap_k() { echo $((PER * ($1 + 1))); }         # the i-th wrapped key (1-based)
create_k() { echo $((C - NC + $1)); }             # the j-th copied object (1-based)
# expected_without REF: the expected state without the object REF (class/id/label).
expected_without() {
  local cls=${1%%/*} rest=${1#*/}; local id=${rest%%/*} label=${rest#*/}
  awk -F'\t' -v c="$cls" -v i="$id" -v l="$label" '!($1 == c && $2 == i && $3 == l)' expected.state
}
item() { ev item out "$1" "$2"; }

# C_UnwrapKey fails after it made the key (the first and the last wrapped key): recovered.
for i in 1 "$NW"; do
  ref=${wrapped[$((i - 1))]} K=$(unwrap_k "$i")
  reset_dst
  migrate "C_UnwrapKey:$K:CKR_DEVICE_ERROR:after"
  rc_is 0
  check "$cmd: $ref status '$(item "$ref" status)', expected migrated" [ "$(item "$ref" status)" = migrated ]
  check "$cmd: $ref recovered '$(item "$ref" recovered)' names CKR_DEVICE_ERROR" \
    grep -q CKR_DEVICE_ERROR <<< "$(item "$ref" recovered)"
  check "$cmd: summary '$(ev summary out)'" [ "$(ev summary out)" = "$NOBJ 0 0 0 $NOBJ" ]
  check_state "C_UnwrapKey:$K:CKR_DEVICE_ERROR:after ($ref)" || true
done

# C_UnwrapKey fails before doing anything: that key fails, exit 1, nothing half-made; a
# re-run (and a resume) finishes it.
for i in 1 "$NW"; do
  ref=${wrapped[$((i - 1))]} K=$(unwrap_k "$i")
  for again in run resume; do
    reset_dst; rm -f "$J"
    migrate "C_UnwrapKey:$K:CKR_DEVICE_ERROR" --journal "$J"
    rc_is 1
    check "$cmd: $ref status '$(item "$ref" status)', expected failed" [ "$(item "$ref" status)" = failed ]
    check "$cmd: $ref reason '$(item "$ref" reason)' names CKR_DEVICE_ERROR" \
      grep -q CKR_DEVICE_ERROR <<< "$(item "$ref" reason)"
    check "$cmd: summary '$(ev summary out)', expected $((NOBJ - 1)) 0 0 1" \
      [ "$(ev summary out)" = "$((NOBJ - 1)) 0 0 1 $NOBJ" ]
    state "$PDST" > dst.state
    check "$cmd: the destination holds everything but $ref (nothing half-made): $(diff <(expected_without "$ref") dst.state | tr '\n' '|')" \
      cmp -s <(expected_without "$ref") dst.state
    if [ "$again" = run ]; then migrate ""; else h "" resume "$J" --json; fi
    rc_is 0
    check "$cmd after the failure: $ref '$(item "$ref" status)', expected migrated" \
      [ "$(item "$ref" status)" = migrated ]
    check "$cmd after the failure: summary '$(ev summary out)', expected 1 $((NOBJ - 1)) 0 0" \
      [ "$(ev summary out)" = "1 $((NOBJ - 1)) 0 0 $NOBJ" ]
    check_state "C_UnwrapKey:$K:CKR_DEVICE_ERROR ($ref), then $again" || true
  done
done

# C_CreateObject fails after it made a copied public key: recovered. Before: that object fails.
pubref="" pubj=0
for j in "${!copied[@]}"; do
  case ${copied[$j]} in public-key/*) pubref=${copied[$j]}; pubj=$((j + 1)); break ;; esac
done
K=$(create_k "$pubj")
reset_dst
migrate "C_CreateObject:$K:CKR_DEVICE_MEMORY:after"
rc_is 0
check "$cmd: $pubref status '$(item "$pubref" status)', recovered '$(item "$pubref" recovered)'" \
  [ "$(item "$pubref" status)" = migrated ]
has out CKR_DEVICE_MEMORY
check_state "C_CreateObject:$K:CKR_DEVICE_MEMORY:after ($pubref)" || true
reset_dst
migrate "C_CreateObject:$K:CKR_DEVICE_MEMORY"
rc_is 1
check "$cmd: $pubref status '$(item "$pubref" status)', expected failed" [ "$(item "$pubref" status)" = failed ]
state "$PDST" > dst.state
check "$cmd: everything but $pubref on the destination: $(diff <(expected_without "$pubref") dst.state | tr '\n' '|')" \
  cmp -s <(expected_without "$pubref") dst.state

# Failed searches: an error naming the CKR, never "0 objects" or success, and no duplicate.
F=$(cnt C_FindObjectsInit)
for rule in "C_FindObjectsInit:*:CKR_DEVICE_ERROR" "C_FindObjects:*:CKR_DEVICE_ERROR" \
            "C_FindObjects:2:CKR_DEVICE_ERROR" $(seq -f "C_FindObjectsInit:%g:CKR_DEVICE_ERROR" 1 "$F"); do
  reset_dst
  migrate "$rule"
  if [ "$rc" -eq 0 ]; then fail "$cmd: exit 0 although a search failed (stdout: $(show out))"; else pass; fi
  has err CKR_DEVICE_ERROR
  lacks err "stack traceback"
  state "$PDST" > dst.state
  check "$cmd: the destination holds a subset of the expected objects, each once ($(show dst.state))" \
    [ -z "$(comm -13 expected.state dst.state)" ]
  migrate ""   # a clean re-run completes
  rc_is 0
  check_state "$rule, then a clean run" || true
done
h "C_FindObjects:*:CKR_DEVICE_ERROR" run generic/inventory token="$SRC" --json
rc_is 1; has err CKR_DEVICE_ERROR; lacks out '"objects":0'

# A wrong PIN (source or destination): a clear message, nothing written on either token.
for side in from to; do
  reset_dst
  BAD="module-path=$FLIB&pin-source=file:$work/badpin"
  if [ $side = from ]; then s="pkcs11:token=src?$BAD" d=$DST; tok=src; else s=$SRC d="pkcs11:token=dst?$BAD" tok=dst; fi
  h "" run generic/migrate from="$s" to="$d" --json
  rc_is 1
  has err "cannot log in to token $tok"
  has err CKR_PIN_INCORRECT
  lacks err "stack traceback"
  state "$PDST" > dst.state
  check "$cmd: nothing written on the destination ($(show dst.state))" [ ! -s dst.state ]
  state "$PSRC" fp > src.now
  check "$cmd: the source is unchanged" cmp -s src.state src.now
done

# The transport key pair cannot be generated on the destination: a clear error, nothing written.
for rule in "C_GenerateKeyPair:1:CKR_DEVICE_ERROR" "C_GenerateKeyPair:1:CKR_DEVICE_ERROR:after"; do
  reset_dst
  migrate "$rule"
  if [ "$rc" -eq 1 ] || [ "$rc" -eq 3 ]; then pass; else fail "$cmd: exit $rc, expected 1 or 3 (stderr: $(show err))"; fi
  has err "transport pair"
  has err CKR_DEVICE_ERROR
  lacks err "stack traceback"
  state "$PDST" > dst.state
  check "$cmd: nothing written on the destination ($(show dst.state))" [ ! -s dst.state ]
  state "$PSRC" fp > src.now
  check "$cmd: the source is unchanged" cmp -s src.state src.now
done

echo "total $((SECONDS - t0)) s"
finish
