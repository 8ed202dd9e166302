#!/usr/bin/env bash
# migrate_faults: DESIGN invariant 1 for generic/migrate ("no key is lost and none duplicated
# — also after kill -9 at any point and hsmsh resume") and its error handling, driven through
# the fault-injecting module tests/fault/libfaultp11.so ($HSMSH_FAULT_LIB, set by ctest).
#
#  1. a small source token (AES-128/256, an AES wrapping key, DES3, RSA-2048 and EC P-256 pairs
#     with extractable private keys, a data object); the expected end state is taken once from
#     a clean migration into a scratch token (its --json events) and from the source itself;
#  2. one clean migration through the fault module counts its PKCS#11 calls (T) and logs them;
#  3. kill sweep, a sample (about 50 points; every call index, the attribute oracle and
#     kills at each call of a resume are kill_sweep_migrate.sh and bench/kill_sweep.sh):
#     kill -9 before the call at every ceil(T/30)-th index of 1..T (T: the calls of a clean
#     run, about 500), before and after each call that makes a destination object (the
#     C_UnwrapKey / C_CreateObject of each object, each C_CopyObject), before call 1, before
#     and after call T, and at T+5 (the run completes); each then `hsmsh resume JOURNAL`;
#     afterwards the destination holds exactly the expected objects, each once, with the
#     source's KCV / fingerprint (private keys also sign, checked with their public key), no
#     transport leftovers on either token, and the source unchanged (inventory and attribute
#     digest); attributes are not compared here. Four kills during a resume (before
#     and after the resume's first object-making call, after its second and after its last),
#     each resumed again; and a last re-run that must skip everything;
#  4. injected errors: C_UnwrapKey / C_CreateObject failing after doing the work (recovered;
#     for a public key and for a data object, which has no CKA_ID), C_UnwrapKey or
#     C_CreateObject failing before (that object fails, exit 1, nothing half-made, a re-run or
#     a resume finishes it), failed searches (exit != 0 naming the CKR, never "0 objects"),
#     failed attribute reads (the CKR named, nothing duplicated), a wrong PIN on either side,
#     a failed transport key-pair generation (clear error, nothing written);
#  5. a kill, the source's data object replaced, resume: replaced on the destination, not doubled.
# The destination's state is read through SoftHSM2 directly (not through the fault module).
# A run takes about 2 minutes of CPU on 2 cores.
# Usage: bash migrate_faults.sh /abs/path/to/hsmsh   (with HSMSH_FAULT_LIB in the environment)
set -u
NAME=migrate_faults
FLIB=${HSMSH_FAULT_LIB:+$(realpath -m "$HSMSH_FAULT_LIB")}   # before common.bash changes directory
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
t0=$SECONDS
export LC_ALL=C   # sort and comm order lines as Lua's table.sort does

if [ -z "${HSMSH_FAULT_LIB:-}" ] || [ ! -f "$FLIB" ]; then
  fail "HSMSH_FAULT_LIB='${HSMSH_FAULT_LIB:-}' is not the built libfaultp11.so (ctest sets it;" \
    "by hand: HSMSH_FAULT_LIB=build/tests/fault/libfaultp11.so bash $0 build/hsmsh)"
  finish
fi
unset HSMSH_FAULT HSMSH_FAULT_COUNT HSMSH_FAULT_LOG
export HSMSH_FAULT_MODULE=$MODULE
# By hand: MIGRATE_FAULTS_EVERY=N kills at every N-th call (default T/30, plus the calls that
# write the destination: about 50 points), MIGRATE_FAULTS_POINTS=N keeps the first N points,
# MIGRATE_FAULTS_JOBS=N runs the sweep in N lanes (default 2 on 2 cores or more).
MAX_POINTS=${MIGRATE_FAULTS_POINTS:-100000}

printf '1234\n' > "$work/pin"
printf '0000\n' > "$work/badpin"
mk_token() { softhsm2-util --init-token --free --label "$1" --pin 1234 --so-pin 12345678 > /dev/null; }
# A fresh, empty destination token (SoftHSM2's own tool, not hsmsh).
reset_dst() {
  softhsm2-util --delete-token --token dst > /dev/null 2>&1
  mk_token dst || { fail "cannot re-create token dst"; finish; }
}
mk_token src || { fail "softhsm2-util --init-token src"; finish; }
srcdir=$(ls "$work/tokens")   # SoftHSM2 keeps each token in one directory of the tokendir
for t in ref dst; do mk_token "$t" || { fail "softhsm2-util --init-token $t"; finish; }; done

FM="module-path=$FLIB&pin-source=file:$work/pin"
SRC="pkcs11:token=src?$FM"                  # through the fault module (shared instance)
DST="pkcs11:token=dst?$FM"
PSRC="pkcs11:token=src?pin-source=file:$work/pin"   # SoftHSM2 directly, for the checks
PDST="pkcs11:token=dst?pin-source=file:$work/pin"
PREF="pkcs11:token=ref?pin-source=file:$work/pin"
J=$work/journal
E=$work/expected.state     # the expected destination (= the source), as state.lua prints it
show() { printf '%s' "$(head -c 600 "$1" 2>/dev/null | tr '\n' '|')"; }

# hf RULES ARGS...: runs hsmsh ARGS with HSMSH_FAULT=RULES (empty: none); sets $rc, files
# out/err, $cmd. Extra environment (HSMSH_FAULT_COUNT/LOG) may be exported by the caller.
hf() {
  local rules=$1; shift
  cmd="${rules:+HSMSH_FAULT='$rules' }hsmsh $*"
  if [ -n "$rules" ]; then
    { HSMSH_FAULT=$rules "$HSMSH" "$@" > out 2> err < /dev/null; } 2> /dev/null
  else
    { "$HSMSH" "$@" > out 2> err < /dev/null; } 2> /dev/null
  fi
  rc=$?
  [ "${1:-}" = run ] || [ "${1:-}" = resume ] && parse
  return 0
}
migrate() { local rules=$1; shift; hf "$rules" run generic/migrate from="$SRC" to="$DST" --json "$@"; }
rc_is() { if [ "$rc" -eq "$1" ]; then pass; else fail "$cmd: exit $rc, expected $1 (stderr: $(show err))"; fi; }
has() {  # has FILE TEXT
  if grep -qsF -- "$2" "$1"; then pass; else fail "$cmd: $1 lacks '$2' ($1: $(show "$1"))"; fi
}
lacks() {  # lacks FILE TEXT
  if grep -qsF -- "$2" "$1"; then fail "$cmd: $1 contains '$2' ($1: $(show "$1"))"; else pass; fi
}

# The --json output of a run, flattened by one Python call (parse) into out.tsv: a line
# "summary M S B F NKEYS" (or "summary none") and one line per key event:
# class/id/label TAB status TAB reason TAB recovered TAB check.
cat > "$work/ev.py" <<'EOF'
import json, sys
keys, summ = [], []
for l in open(sys.argv[1]):
    l = l.strip()
    if not l:
        continue
    try:
        e = json.loads(l)
    except ValueError:
        e = {"event": "unparsable"}
    if e.get("event") == "key":
        keys.append(e)
    elif e.get("event") == "summary":
        summ.append(e)
with open(sys.argv[2], "w") as f:
    if summ:
        s = summ[-1]
        f.write("summary %s %s %s %s %d\n" % (s.get("migrated"), s.get("skipped"), s.get("blocked"),
                                              s.get("failed"), len(keys)))
    else:
        f.write("summary none\n")
    for e in keys:
        clean = lambda v: str(v if v is not None else "").replace("\t", " ").replace("\n", " ")
        f.write("\t".join([clean("%s/%s/%s" % (e.get("class"), e.get("id"), e.get("label"))),
                           clean(e.get("status")), clean(e.get("reason")), clean(e.get("recovered")),
                           clean(e.get("kcv") or e.get("fingerprint") or "none")]) + "\n")
EOF
PY=$(command -v /usr/bin/python3 || command -v python3)   # (a pyenv shim costs ~0.7 s a call)
parse() { "$PY" "$work/ev.py" out out.tsv; }
summary() { sed -n 's/^summary //p' out.tsv; }               # "M S B F NKEYS" | "none"
nfailed() { summary | cut -d' ' -f4; }
item() {  # item REF FIELD (status|reason|recovered): the field of REF's one key event
  awk -F'\t' -v r="$1" -v f="$2" '$1 == r {n++; v = (f == "status" ? $2 : f == "reason" ? $3 : $4)}
    END {print (n == 1 ? v : "(" n + 0 " events)")}' out.tsv
}
statuses() { awk -F'\t' 'NR > 1 {print $1 " " $2}' out.tsv | sort; }


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
cp -a "$work/tokens/$srcdir" "$work/src-token"   # for the kill-sweep lanes (section 3)

state "$PSRC" fp > "$work/src.state"
inventory "$PSRC" > "$work/src.inv"
grep -v '^#' "$work/src.state" | cut -f1-4 > src.objects
NOBJ=$(wc -l < src.objects)
check "the source has 9 objects (got $NOBJ: $(show src.objects))" [ "$NOBJ" -eq 9 ]
check "every source private key signs (state: $(show "$work/src.state"))" \
  [ "$(grep -c 'sign-ok' "$work/src.state")" -eq 2 ]

# The expected state: a clean migration into the scratch token ref (SoftHSM2 directly).
hf "" run generic/migrate from="$PSRC" to="$PREF" --json
rc_is 0
check "clean migration into ref: summary $(summary), expected $NOBJ 0 0 0 $NOBJ" \
  [ "$(summary)" = "$NOBJ 0 0 0 $NOBJ" ]
awk -F'\t' 'NR > 1 {split($1, r, "/"); print r[1] "\t" r[2] "\t" substr($1, length(r[1]) + length(r[2]) + 3) "\t" $5}' out.tsv | sort > expected.objects
check "the clean migration's --json objects (class,id,label,check) are the source's" \
  diff -u src.objects expected.objects
grep -v '^#' "$work/src.state" > "$E"
state "$PREF" > ref.state
check "the scratch destination holds the expected state" diff -u "$E" ref.state

# check_state WHAT: the destination holds exactly the expected objects (each once, same check
# values, private keys sign), no transport object on either token, the source unchanged.
check_state() {
  local what=$1 ok=1
  state "$PDST" > dst.state
  if ! diff -u "$E" dst.state > state.diff; then
    ok=0
    local dups
    dups=$(cut -f1-3 dst.state | sort | uniq -d | tr '\n' ' ')
    fail "$what: destination state differs from the expected${dups:+ (DUPLICATES: $dups)}:" \
      "$(grep '^[-+][^-+]' state.diff | tr '\n' '|')"
  fi
  state "$PSRC" fp > src.now
  inventory "$PSRC" > src.inv.now
  if ! cmp -s "$work/src.state" src.now || ! cmp -s "$work/src.inv" src.inv.now; then
    ok=0
    fail "$what: the source changed: $(diff "$work/src.state" src.now | tr '\n' '|') $(diff "$work/src.inv" src.inv.now | head -c 400 | tr '\n' '|')"
  fi
  if grep -q 'hsmsh-transport' dst.state src.now; then
    ok=0
    fail "$what: transport objects left behind: $(grep -h 'hsmsh-transport' dst.state src.now | tr '\n' '|')"
  fi
  [ $ok -eq 1 ] && pass
  return $((1 - ok))
}

# ---- 2. count the calls of a clean migration through the fault module ----
# Which call made which object: the fault module's log and the journal are both appended
# with O_APPEND, one write per line, so pointing HSMSH_FAULT_LOG at the journal file gives
# one timeline of PKCS#11 calls and journal steps. The call that made REF's object is the
# last C_UnwrapKey / C_CreateObject between REF's "create" and "created" (or "done") steps.
# map_calls TIMELINE prints: REF TAB FUNCTION TAB N (overall call number) TAB K (its number
# among the calls of FUNCTION).
map_calls() {
  awk '
    /^[0-9]/ { c[$2]++
               if (inflight != "" && ($2 == "C_UnwrapKey" || $2 == "C_CreateObject")) last = $2 "\t" $1 "\t" c[$2]
               next }
    /^\{/ { if ($0 ~ /"event":"(start|resume)"/) { inflight = ""; last = ""; next }
            ref = ""
            if (match($0, /"ref":"[^"]*"/)) ref = substr($0, RSTART + 7, RLENGTH - 8)
            if ($0 ~ /"step":"create"/) { inflight = ref; last = "" }
            else if (ref != "" && ref == inflight && $0 ~ /"step":"(created|done)"/) {
              if (last != "") print ref "\t" last
              inflight = ""; last = "" } }' "$1"
}
# count_run DIR: a clean migration into a fresh dst through the fault module, its calls
# counted into DIR/count, its timeline in DIR/timeline, the calls alone in DIR/log, the
# call of each object in DIR/map; sets T, wrapped[] and copied[] (refs in the plan order).
count_run() {
  local dir=$1 r
  reset_dst
  rm -f "$dir/count" "$dir/timeline"
  HSMSH_FAULT_COUNT=$dir/count HSMSH_FAULT_LOG=$dir/timeline migrate "" --journal "$dir/timeline"
  rc_is 0
  check "clean run through the fault module: summary $(summary)" [ "$(summary)" = "$NOBJ 0 0 0 $NOBJ" ]
  check_state "clean run through the fault module" || true
  # (The plan follows the source's enumeration order, which SoftHSM2 derives from its memory
  # layout: loaded through the fault module the order differs from a direct load, but it is
  # the same from run to run. A sweep lane works from its own count run and map.)
  awk -F'\t' 'NR > 1 {print $1}' out.tsv > "$dir/order"
  grep '^[0-9]' "$dir/timeline" > "$dir/log"
  map_calls "$dir/timeline" > "$dir/map"
  T=$(awk '$1 == "total" {print $2}' "$dir/count")
  wrapped=() copied=()
  while read -r r; do
    case $r in secret-key/*|private-key/*) wrapped+=("$r") ;; *) copied+=("$r") ;; esac
  done < "$dir/order"
  check "the count file has a total (${T:-none}) and the timeline the call that made each of the $NOBJ objects: $(tr '\n' '|' < "$dir/map")" \
    [ -n "${T:-}" -a "$(wc -l < "$dir/map")" -eq "$NOBJ" ]
}
# call_of REF [FIELD]: from the main run's map, K (default) or N of the call that made REF.
call_of() { awk -F'\t' -v r="$1" -v f="${2:-4}" '$1 == r {print $f}' "$work/map"; }

# select_points DIR: the kill points. Evenly spaced over 1..T, and before and after each call
# that makes an object on the destination (from DIR/map, and each C_CopyObject); the first call; the end (T,
# T:after) and beyond it (T+5: the run completes).
select_points() {
  local n step=${MIGRATE_FAULTS_EVERY:-$(( (T + 29) / 30 ))}
  {
    for ((n = (step + 1) / 2; n <= T; n += step)); do echo "kill:$n"; done
    awk -F'\t' '{print "kill:" $3; print "kill:" $3 ":after"}' "$1/map"
    # SoftHSM2's keys go through a session object: the copy to the token makes the object.
    awk '$2 == "C_CopyObject" {print "kill:" $1; print "kill:" $1 ":after"}' "$1/log"
    echo "kill:1"; echo "kill:$T"; echo "kill:$T:after"; echo "kill:$((T + 5))"
  } | awk '!seen[$0]++' | head -n "$MAX_POINTS"
}

# kill_point RULE: a fresh destination, a migration killed by RULE, `hsmsh resume` (or, when
# the kill came before the journal's first line, a new run), then the invariants. Counts
# into killed, completed, no_journal, before_steps, in_steps, after_end, sweep_bad.
kill_point() {
  local rule=$1 n got sum
  reset_dst
  rm -f "$J" kcount
  HSMSH_FAULT_COUNT=$PWD/kcount migrate "$rule" --journal "$J"
  n=${rule#kill:}; n=${n%:after}
  if [ "$rc" -eq 137 ]; then
    killed=$((killed + 1))
    got=$(awk '$1 == "total" {print $2}' kcount 2> /dev/null)
    [ "${got:-}" = "$n" ] || fail "$rule: killed, but the count file says total ${got:-none}"
  elif [ "$rc" -eq 0 ] && [ "$n" -gt "$T" ]; then
    completed=$((completed + 1))
  else
    sweep_bad=$((sweep_bad + 1))
    fail "$cmd: exit $rc, expected 137 (kill point $n of $T; stderr: $(show err))"
    return
  fi
  # Where the kill landed, as the journal tells it.
  if [ ! -s "$J" ]; then no_journal=$((no_journal + 1))
  elif grep -q '"event":"end"' "$J"; then after_end=$((after_end + 1))
  elif grep -q '"event":"step"' "$J"; then in_steps=$((in_steps + 1))
  else before_steps=$((before_steps + 1)); fi
  if [ -s "$J" ]; then
    hf "" resume "$J" --json
    if [ "$rc" -ne 0 ] || [ "$(nfailed)" != 0 ]; then
      sweep_bad=$((sweep_bad + 1))
      fail "$rule then hsmsh resume: exit $rc, summary '$(summary)' (stderr: $(show err); stdout: $(show out))"
    else pass; fi
    # Every object exactly once in the resume's events, migrated or skipped.
    if [ "$(statuses | grep -cE ' (migrated|skipped)$')" -ne "$NOBJ" ] || [ "$(statuses | wc -l)" -ne "$NOBJ" ]; then
      fail "$rule then resume: events $(statuses | tr '\n' '|')"
    fi
  else
    # Killed before the journal's first line: resume cannot start, a new run must.
    hf "" resume "$J" --json
    rc_is 1; has err "cannot read journal"
    migrate "" --journal "$J"
    rc_is 0
  fi
  sum=$(summary)
  check_state "$rule, then resume (summary $sum)" || sweep_bad=$((sweep_bad + 1))
}

count_run "$work"
[ -n "${T:-}" ] && [ "$(wc -l < "$work/map")" -eq "$NOBJ" ] || finish
cnt() { awk -v f="$1" '$1 == f {print $2}' "$work/count"; }
echo "a full migration makes T=$T PKCS#11 calls ($(cnt C_UnwrapKey) C_UnwrapKey, $(cnt C_CreateObject)" \
  "C_CreateObject, $(cnt C_GetAttributeValue) C_GetAttributeValue); ${#wrapped[@]} keys wrapped," \
  "${#copied[@]} objects copied"

# ---- 3. kill sweep ----
# The points are shared out between JOBS lanes (default: 2 if there are 2 cores). Each lane
# has its own token directory: a copy of the source token (made before any migration), its
# own ref and dst tokens, its own count run and log (from which it picks the same points as
# the main run, unless the copy enumerates differently), and reports its counters in its
# result file.
select_points "$work" > points
npoints=$(wc -l < points)
JOBS=${MIGRATE_FAULTS_JOBS:-$(( $(nproc 2> /dev/null || echo 1) >= 2 ? 2 : 1 ))}
sweep_lane() {
  local lane=$1 rule
  LW=$work/lane$lane
  mkdir -p "$LW/tokens"
  cp -a "$work/src-token" "$LW/tokens/" || { fail "lane $lane: cannot copy the source token"; return; }
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$LW" > "$LW/softhsm2.conf"
  export SOFTHSM2_CONF=$LW/softhsm2.conf
  cd "$LW" || return
  J=$LW/journal
  passed=0 failed=0 killed=0 completed=0 no_journal=0 before_steps=0 in_steps=0 after_end=0 sweep_bad=0
  mk_token ref && mk_token dst || fail "lane $lane: cannot make its tokens"
  state "$PSRC" fp > src.copy
  check "lane $lane: its copy of the source is the source" cmp -s "$work/src.state" src.copy
  local T0=$T
  count_run "$LW"
  select_points "$LW" > points
  cmp -s points "$work/points" || echo "note: lane $lane (its own copy of the source) has other" \
    "kill points than the main run (T=$T here, $T0 there); it sweeps its own"
  awk -v j="$JOBS" -v l="$lane" '(NR - 1) % j == l' points > mine
  while read -r rule; do kill_point "$rule"; done < mine
  echo "$passed $failed $killed $completed $no_journal $before_steps $in_steps $after_end $sweep_bad" > result
}
for ((l = 0; l < JOBS; l++)); do ( sweep_lane "$l" ) & done
wait
tot=(0 0 0 0 0 0 0 0 0)
for ((l = 0; l < JOBS; l++)); do
  if [ -s "$work/lane$l/result" ]; then
    read -ra r < "$work/lane$l/result"
    for i in "${!tot[@]}"; do tot[i]=$((tot[i] + r[i])); done
  else fail "lane $l of the kill sweep left no result"; fi
done
passed=$((passed + tot[0])) failed=$((failed + tot[1]))
echo "kill sweep: $npoints kill points over T=$T calls in $JOBS lanes: ${tot[2]} killed, ${tot[3]} ran to" \
  "the end; journal: ${tot[4]} before it existed, ${tot[5]} before the first step (setup/plan)," \
  "${tot[6]} during the migration steps, ${tot[7]} after its end event; ${tot[8]} with a violation"
[ "$npoints" -ge 40 ] || [ "$MAX_POINTS" -lt 40 ] || fail "only $npoints kill points (expected at least 40)"

# Kills during the resume itself: kill a first run just after it made the second wrapped key,
# kill its resume where the resume makes objects (found from the resume's own timeline),
# resume again.
mid=$(call_of "${wrapped[1]}" 3)
reset_dst; rm -f "$J"
migrate "kill:$mid:after" --journal "$J"; rc_is 137
cp "$J" "$work/j2"
HSMSH_FAULT_LOG=$work/j2 hf "" resume "$work/j2" --json   # its calls and steps in one timeline
rc_is 0
map_calls "$work/j2" > "$work/map2"
resume_points=$(awk -F'\t' 'NR == 1 {print "kill:" $3; print "kill:" $3 ":after"} NR == 2 {print "kill:" $3 ":after"}
  END {print "kill:" $3 ":after"}' "$work/map2" | awk '!seen[$0]++')
resume_kills=0 nresume=0
for second in $resume_points; do
  nresume=$((nresume + 1))
  reset_dst; rm -f "$J"
  migrate "kill:$mid:after" --journal "$J"
  rc_is 137
  hf "$second" resume "$J" --json
  if [ "$rc" -eq 137 ]; then resume_kills=$((resume_kills + 1)); pass
  else fail "$cmd: exit $rc, expected 137 (stderr: $(show err))"; fi
  hf "" resume "$J" --json
  rc_is 0
  check "kill:$mid:after, resume killed by $second, resume: summary '$(summary)'" [ "$(nfailed)" = 0 ]
  check_state "kill:$mid:after, resume killed by $second, resume" || true
done

# After a resume, running the migration again skips everything and creates nothing.
reset_dst; rm -f "$J"
migrate "kill:$mid" --journal "$J"; rc_is 137
hf "" resume "$J" --json; rc_is 0
migrate ""
rc_is 0
check "re-run after a resume: summary '$(summary)', expected 0 $NOBJ 0 0 $NOBJ" \
  [ "$(summary)" = "0 $NOBJ 0 0 $NOBJ" ]
check_state "re-run after a resume" || true
hf "" resume "$J" --json   # resuming a finished run changes nothing either
rc_is 0
check "resume of a finished run: summary '$(summary)', expected 0 $NOBJ 0 0 $NOBJ" \
  [ "$(summary)" = "0 $NOBJ 0 0 $NOBJ" ]
check_state "resume of a finished run" || true
echo "kills during a resume: $resume_kills of $nresume resumes killed, each then resumed; kill sweep" \
  "done in $((SECONDS - t0)) s"

# ---- 4. injected errors ----
# expected_without REF: the expected state without the object REF (class/id/label).
expected_without() {
  local cls=${1%%/*} rest=${1#*/}; local id=${rest%%/*} label=${rest#*/}
  awk -F'\t' -v c="$cls" -v i="$id" -v l="$label" '!($1 == c && $2 == i && $3 == l)' "$E"
}

# C_UnwrapKey fails after it made the key (the first and the last wrapped key): recovered.
for ref in "${wrapped[0]}" "${wrapped[-1]}"; do
  K=$(call_of "$ref")
  reset_dst
  migrate "C_UnwrapKey:$K:CKR_DEVICE_ERROR:after"
  rc_is 0
  check "$cmd: $ref status '$(item "$ref" status)', expected migrated" [ "$(item "$ref" status)" = migrated ]
  check "$cmd: $ref recovered '$(item "$ref" recovered)' names CKR_DEVICE_ERROR" \
    grep -q CKR_DEVICE_ERROR <<< "$(item "$ref" recovered)"
  check "$cmd: summary '$(summary)'" [ "$(summary)" = "$NOBJ 0 0 0 $NOBJ" ]
  check_state "C_UnwrapKey:$K:CKR_DEVICE_ERROR:after ($ref)" || true
done

# C_UnwrapKey fails before doing anything: that key fails, exit 1, nothing half-made; a
# re-run (and a resume) finishes it.
for ref in "${wrapped[0]}" "${wrapped[-1]}"; do
  K=$(call_of "$ref")
  for again in run resume; do
    reset_dst; rm -f "$J"
    migrate "C_UnwrapKey:$K:CKR_DEVICE_ERROR" --journal "$J"
    rc_is 1
    check "$cmd: $ref status '$(item "$ref" status)', expected failed" [ "$(item "$ref" status)" = failed ]
    check "$cmd: $ref reason '$(item "$ref" reason)' names CKR_DEVICE_ERROR" \
      grep -q CKR_DEVICE_ERROR <<< "$(item "$ref" reason)"
    check "$cmd: summary '$(summary)', expected $((NOBJ - 1)) 0 0 1" \
      [ "$(summary)" = "$((NOBJ - 1)) 0 0 1 $NOBJ" ]
    state "$PDST" > dst.state
    check "$cmd: the destination holds everything but $ref (nothing half-made): $(diff <(expected_without "$ref") dst.state | tr '\n' '|')" \
      cmp -s <(expected_without "$ref") dst.state
    if [ "$again" = run ]; then migrate ""; else hf "" resume "$J" --json; fi
    rc_is 0
    check "$cmd after the failure: $ref '$(item "$ref" status)', expected migrated" \
      [ "$(item "$ref" status)" = migrated ]
    check "$cmd after the failure: summary '$(summary)', expected 1 $((NOBJ - 1)) 0 0" \
      [ "$(summary)" = "1 $((NOBJ - 1)) 0 0 $NOBJ" ]
    check_state "C_UnwrapKey:$K:CKR_DEVICE_ERROR ($ref), then $again" || true
  done
done

# C_CreateObject fails after it made a copied public key: recovered. Before: that object fails.
pubref=$(printf '%s\n' "${copied[@]}" | grep -m1 '^public-key/')
K=$(call_of "$pubref")
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
# (class, ID and label only: without its public key an EC private key shows no fingerprint)
check "$cmd: everything but $pubref on the destination: $(diff <(expected_without "$pubref" | cut -f1-3) <(cut -f1-3 dst.state) | tr '\n' '|')" \
  cmp -s <(expected_without "$pubref" | cut -f1-3) <(cut -f1-3 dst.state)

# The same for the copied data object. A data object has no CKA_ID attribute, so the search
# for what the failed step left must not ask for one.
dataref=$(printf '%s\n' "${copied[@]}" | grep -m1 '^data/')
K=$(call_of "$dataref")
reset_dst
migrate "C_CreateObject:$K:CKR_DEVICE_MEMORY:after"
rc_is 0
check "$cmd: $dataref status '$(item "$dataref" status)' (reason '$(item "$dataref" reason)'), expected migrated" \
  [ "$(item "$dataref" status)" = migrated ]
check_state "C_CreateObject:$K:CKR_DEVICE_MEMORY:after ($dataref)" || true

# Failed searches: an error naming the CKR, never "0 objects" or success, and no duplicate.
F=$(awk '$1 == "C_FindObjectsInit" {print $2}' "$work/count")
for rule in "C_FindObjectsInit:*:CKR_DEVICE_ERROR" "C_FindObjects:*:CKR_DEVICE_ERROR" \
            "C_FindObjects:2:CKR_DEVICE_ERROR" $(seq -f "C_FindObjectsInit:%g:CKR_DEVICE_ERROR" 1 "$F"); do
  reset_dst
  migrate "$rule"
  if [ "$rc" -eq 0 ]; then fail "$cmd: exit 0 although a search failed (stdout: $(show out))"; else pass; fi
  has err CKR_DEVICE_ERROR
  lacks err "stack traceback"
  state "$PDST" > dst.state
  check "$cmd: the destination holds a subset of the expected objects, each once ($(show dst.state))" \
    [ -z "$(LC_ALL=C comm -13 "$E" dst.state)$(cut -f1-3 dst.state | sort | uniq -d)" ]
  migrate ""   # a clean re-run completes
  rc_is 0
  check_state "$rule, then a clean run" || true
done
hf "C_FindObjects:*:CKR_DEVICE_ERROR" run generic/inventory token="$SRC" --json
rc_is 1; has err CKR_DEVICE_ERROR; lacks out '"objects":0'

# A failed attribute read (C_GetAttributeValue), (a) while the plan of a re-run lists the
# tokens (the first read after each search before the first step), (b) while the first
# wrapped key is settled (the first read after the call that made it): an error naming the
# CKR (DESIGN: device failures come back as "C_X: CKR_Y"; a clear message), nothing
# duplicated, nothing half-made.
reset_dst
migrate ""; rc_is 0
rm -f "$work/rerun"
HSMSH_FAULT_LOG=$work/rerun migrate "" --journal "$work/rerun"   # a re-run's timeline
rc_is 0
for k in $(awk '/"event":"step"/ {exit} $2 == "C_FindObjectsInit" {want = 1}
    $2 == "C_GetAttributeValue" {g++; if (want) {print g; want = 0}}' "$work/rerun"); do
  migrate "C_GetAttributeValue:$k:CKR_DEVICE_ERROR"
  rc_is 1
  has err CKR_DEVICE_ERROR
  lacks err "attempt to index"
  check_state "C_GetAttributeValue:$k:CKR_DEVICE_ERROR while a re-run lists the tokens" || true
done
ref=${wrapped[0]}
k=$(awk -v n0="$(call_of "$ref" 3)" '$2 == "C_GetAttributeValue" {g++; if ($1 > n0) {print g; exit}}' "$work/log")
reset_dst
migrate "C_GetAttributeValue:$k:CKR_DEVICE_ERROR"
rc_is 1
check "$cmd: $ref status '$(item "$ref" status)', expected failed" [ "$(item "$ref" status)" = failed ]
check "$cmd: $ref reason '$(item "$ref" reason)' names CKR_DEVICE_ERROR" \
  grep -q CKR_DEVICE_ERROR <<< "$(item "$ref" reason)"
state "$PDST" > dst.state
check "$cmd: the destination holds everything but $ref: $(diff <(expected_without "$ref") dst.state | tr '\n' '|')" \
  cmp -s <(expected_without "$ref") dst.state
migrate ""; rc_is 0
check_state "C_GetAttributeValue:$k:CKR_DEVICE_ERROR while settling $ref, then a clean run" || true

# A wrong PIN (source or destination): a clear message, nothing written on either token.
for side in from to; do
  reset_dst
  BAD="module-path=$FLIB&pin-source=file:$work/badpin"
  if [ $side = from ]; then s="pkcs11:token=src?$BAD" d=$DST; tok=src; else s=$SRC d="pkcs11:token=dst?$BAD" tok=dst; fi
  hf "" run generic/migrate from="$s" to="$d" --json
  rc_is 1
  has err "cannot log in to token $tok"
  has err CKR_PIN_INCORRECT
  lacks err "stack traceback"
  state "$PDST" > dst.state
  check "$cmd: nothing written on the destination ($(show dst.state))" [ ! -s dst.state ]
  state "$PSRC" fp > src.now
  check "$cmd: the source is unchanged" cmp -s "$work/src.state" src.now
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
  check "$cmd: the source is unchanged" cmp -s "$work/src.state" src.now
done

# ---- 5. kill, another program writes the destination, resume ----
# Resume destroys, replaces or completes only what holds the key in flight (its KCV or
# fingerprint, or the one journaled): never by label, ID or timing. The other program is
# pkcs11-tool writing SoftHSM2 directly, between the kill and the resume.
P11=(pkcs11-tool --module "$MODULE" --token-label dst --login --pin 1234)
ref=secret-key/0102/aes256
n=$(call_of "$ref" 3)
# a) its own key under the in-flight label and ID: a conflict, the key untouched.
reset_dst; rm -f "$J"
migrate "kill:$n" --journal "$J"
rc_is 137
"${P11[@]}" --keygen --key-type AES:32 --label aes256 --id 0102 --usage-decrypt > p11.out 2>&1 ||
  fail "pkcs11-tool --keygen aes256/0102 on dst: $(show p11.out)"
state "$PDST" | grep -v hsmsh-lease > theirs.before   # (the killed run's lease goes: hsm.claim)
theirs=$(awk -F'\t' '$1 == "secret-key" && $2 == "0102"' theirs.before)
check "pkcs11-tool's aes256/0102 has a KCV ($theirs)" grep -qv none <<< "$theirs"
hf "" resume "$J" --json
check "kill:$n ($ref in flight), pkcs11-tool's key under its label and ID, resume: exit $rc, expected 1" [ "$rc" -eq 1 ]
has err "now holds another key"
lacks err "stack traceback"
state "$PDST" | grep -v hsmsh-lease > theirs.after
check "the resume left pkcs11-tool's key and everything else as it was: $(diff theirs.before theirs.after | tr '\n' '|')" \
  cmp -s theirs.before theirs.after
# b) an unnamed key of its own: left as it is, and the migration completes.
reset_dst; rm -f "$J"
migrate "kill:$n" --journal "$J"
rc_is 137
"${P11[@]}" --keygen --key-type AES:16 --usage-decrypt > p11.out 2>&1 ||
  fail "pkcs11-tool --keygen (no label, no ID) on dst: $(show p11.out)"
state "$PDST" > anon.before
anon=$(awk -F'\t' '$1 == "secret-key" && $2 == "" && $3 == ""' anon.before)
check "pkcs11-tool's unnamed key has a KCV ($anon)" grep -qv none <<< "$anon"
hf "" resume "$J" --json
rc_is 0
state "$PDST" > dst.state
check "kill:$n, pkcs11-tool's unnamed key, resume: the destination holds the expected objects and that key: $(diff <(sort "$E" - <<< "$anon") dst.state | tr '\n' '|')" \
  cmp -s <(sort "$E" - <<< "$anon") dst.state

# ---- 6. a kill, the source's data object replaced, then resume ----
# The resume finds the object the killed run made in flight, with a value that is no longer
# the source's: it must replace it, not add a second one. (Last: a new token src2 changes
# the call numbering of everything above.)
mk_token src2 || fail "softhsm2-util --init-token src2"
cat > "$work/data.lua" <<'LUA'
local hsm = require("hsm")
local s = hsm.token(arg[1])
for _, o in ipairs(assert(s:objects())) do assert(o:destroy()) end
assert(s:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = false,
  CKA_LABEL = "cfg2", CKA_APPLICATION = "migrate_faults", CKA_VALUE = arg[2]})
LUA
PSRC2="pkcs11:token=src2?pin-source=file:$work/pin"
SRC2="pkcs11:token=src2?$FM"
"$HSMSH" "$work/data.lua" "$PSRC2" "version 1" > out 2> err || fail "making src2: $(show err)"
reset_dst
rm -f "$work/tl2"
HSMSH_FAULT_LOG=$work/tl2 hf "" run generic/migrate from="$SRC2" to="$DST" --json --journal "$work/tl2"
rc_is 0
N2=$(map_calls "$work/tl2" | awk -F'\t' '{print $3}')
reset_dst; rm -f "$J"
hf "kill:$N2:after" run generic/migrate from="$SRC2" to="$DST" --json --journal "$J"
rc_is 137
"$HSMSH" "$work/data.lua" "$PSRC2" "version 2" > out 2> err || fail "replacing src2's object: $(show err)"
hf "" resume "$J" --json
rc_is 0
state "$PSRC2" > src2.state
state "$PDST" > dst.state
check "kill:$N2:after (its C_CreateObject), the source's data object replaced, resume: the destination holds $(show dst.state), expected $(show src2.state)" \
  cmp -s src2.state dst.state

# ---- 7. a source key without label or ID, a finished run, resume ----
# Resuming a run that finished must change nothing: the unnamed key's migrated copy is the
# source's key (its KCV), not something the run left behind.
mk_token src3 || fail "softhsm2-util --init-token src3"
cat > "$work/anon.lua" <<'LUA'
local hsm = require("hsm")
local s = hsm.token(arg[1])
assert(s:generate{type = "AES", bits = 128, CKA_EXTRACTABLE = true, CKA_ENCRYPT = true})
assert(s:generate{type = "AES", bits = 256, label = "named", id = "\9", CKA_EXTRACTABLE = true,
  CKA_ENCRYPT = true})
LUA
"$HSMSH" "$work/anon.lua" "pkcs11:token=src3?pin-source=file:$work/pin" > out 2> err || fail "making src3: $(show err)"
reset_dst; rm -f "$J"
hf "" run generic/migrate from="pkcs11:token=src3?pin-source=file:$work/pin" to="$PDST" --json --journal "$J"
rc_is 0
state "pkcs11:token=src3?pin-source=file:$work/pin" > src3.state
state "$PDST" > done.state
check "src3 migrated: the destination holds $(show done.state), expected $(show src3.state)" cmp -s src3.state done.state
hf "" resume "$J" --json
rc_is 0
lacks err "closed"
state "$PDST" > dst.state
check "resuming the finished run changed nothing on the destination: $(diff done.state dst.state | tr '\n' '|')" \
  cmp -s done.state dst.state

echo "total $((SECONDS - t0)) s"
finish
