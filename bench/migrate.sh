#!/usr/bin/env bash
# bench/migrate.sh - how fast `hsmsh run generic/migrate` moves N AES keys between two
# SoftHSM2 tokens, next to a minimal C loop that does the same PKCS#11 work (measured in the
# same run, on the same token directory). A benchmark: it prints figures, it asserts only
# that every run migrated what it should have. See bench/README.md.
#
#   bench/migrate.sh [HSMSH_BINARY] [N]        defaults: build/hsmsh, N=1000
#
# Environment:
#   BENCH_DIR=DIR        where the token directory lives (default: mktemp -d under /tmp); a
#                        fresh hsmsh-bench.XXXXXX directory is made inside and removed at exit
#   BENCH_KEEP=1         keep that directory
#   BENCH_REPEAT=3       rounds of the timed runs (raw rsa-aes, raw kwp, hsmsh, re-run),
#                        interleaved; the summary shows medians and min-max
#   BENCH_P11TOOL_N=200  keys for the pkcs11-tool loop (0 skips it)
#   BENCH_PROFILE=1      afterwards, profile one more raw run and one more hsmsh run: PKCS#11
#                        calls and time per function (tests/fault/faultp11.c) and hsmsh's time per
#                        stdlib function (bench/profile.lua), per key
#   SOFTHSM2_MODULE=PATH the module (default /usr/lib/softhsm/libsofthsm2.so)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "migrate.sh: $*" >&2; exit 1; }

HSMSH=${1:-build/hsmsh}
N=${2:-1000}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"
[ -x "$HSMSH" ] || die "no hsmsh binary at $HSMSH (build it first, or pass its path)"
HSMSH=$(realpath "$HSMSH")
MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$MODULE" ] || die "no PKCS#11 module at $MODULE"
REPEAT=${BENCH_REPEAT:-3}
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive integer"
P11TOOL_N=${BENCH_P11TOOL_N:-200}
[[ $P11TOOL_N =~ ^[0-9]+$ ]] || die "BENCH_P11TOOL_N must be a number"
[ "$P11TOOL_N" -le "$N" ] || P11TOOL_N=$N
PIN=1234 SOPIN=12345678

if [ -n "${BENCH_DIR:-}" ]; then
  mkdir -p "$BENCH_DIR"
  work=$(mktemp -d "$BENCH_DIR/hsmsh-bench.XXXXXX")
else
  work=$(mktemp -d /tmp/hsmsh-bench.XXXXXX)
fi
work=$(realpath "$work")
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  trap 'echo "kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/tokens" "$work/home" "$work/state" "$work/data"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" HOME="$work/home" XDG_STATE_HOME="$work/state" \
  XDG_DATA_HOME="$work/data"

# stat -f names the ext2/3/4 family "ext2/ext3"; findmnt tells which one.
fstype=$(stat -f -c %T "$work/tokens")
fsmount=$(findmnt -n -o FSTYPE --target "$work/tokens" 2> /dev/null || true)
case $fstype in
  tmpfs) fsnote="tmpfs" ;;
  *) fsnote="$fstype${fsmount:+ (mounted as $fsmount)}" ;;
esac

TIMEV=
if [ -x /usr/bin/time ]; then TIMEV=/usr/bin/time; fi

# ---------------------------------------------------------------- helpers

declare -A SECS RSS CPU
# timed NAME CMD...: runs CMD (stdout -> $work/NAME.out, stderr -> $work/NAME.err), records
# its wall time in SECS[NAME] and, with /usr/bin/time (not for shell functions), its peak
# RSS (kB) in RSS[NAME] and its user+sys seconds in CPU[NAME].
# Dirty pages of earlier steps are flushed first, so no run pays for another's writeback.
timed() {
  local name=$1; shift
  sync
  local t0=$EPOCHREALTIME rc=0
  if [ -n "$TIMEV" ] && ! declare -F "$1" > /dev/null; then
    "$TIMEV" -v -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err" || rc=$?
  else
    "$@" > "$work/$name.out" 2> "$work/$name.err" || rc=$?
  fi
  local t1=$EPOCHREALTIME
  SECS[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  RSS[$name]='' CPU[$name]=''
  if [ -f "$work/$name.time" ]; then
    RSS[$name]=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$work/$name.time")
    CPU[$name]=$(awk -F': ' '/User time|System time/ { t += $2 } END { printf "%.2f", t }' \
      "$work/$name.time")
  fi
  if [ "$rc" -ne 0 ]; then
    echo "migrate.sh: $name failed (exit $rc):" >&2
    tail -n 20 "$work/$name.err" >&2
    exit 1
  fi
}

rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", n / s; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b > 0) printf "%.2f", a / b; else print "-" }'; }

init_token() {
  softhsm2-util --init-token --free --label "$1" --pin "$PIN" --so-pin "$SOPIN" > /dev/null
}
reset_dst() {
  softhsm2-util --delete-token --token dst > /dev/null
  init_token dst
}
count() { "$work/raw_migrate" "$MODULE" "$PIN" count "$1"; }
expect_count() {   # TOKEN WANT WHAT
  local got
  got=$(count "$1")
  [ "$got" = "$2" ] || die "$3: token $1 holds $got secret keys, expected $2"
}

SRC="pkcs11:token=src?module-path=$MODULE&pin-value=$PIN"
DST="pkcs11:token=dst?module-path=$MODULE&pin-value=$PIN"

echo "== hsmsh migrate benchmark: N=$N keys"
echo "hsmsh:        $HSMSH ($("$HSMSH" --version 2>/dev/null | head -n 1))"
echo "module:       $MODULE ($(dpkg-query -W -f '${Version}' softhsm2 2>/dev/null || echo '?'))"
echo "token dir:    $work/tokens"
echo "filesystem:   $fsnote"
echo "cpus:         $(nproc), $(uname -r)"

# ---------------------------------------------------------------- 1. tokens and keys

P11KIT_CFLAGS=$(pkg-config --cflags p11-kit-1)
# shellcheck disable=SC2086 # pkg-config's flags are words
cc -O2 -std=c11 -Wall -Wextra $P11KIT_CFLAGS "$here/raw_migrate.c" -ldl -o "$work/raw_migrate"
init_token src
init_token dst

timed create "$HSMSH" -e "
local s = hsm.token('$SRC')
for i = 1, $N do
  assert(s:generate{type = 'AES', bits = 256, label = ('k%04d'):format(i),
                    id = string.pack('>I4', i), CKA_EXTRACTABLE = true, CKA_SENSITIVE = true,
                    CKA_ENCRYPT = true, CKA_DECRYPT = true})
end"
expect_count src "$N" "key creation"
echo
echo "1. created $N extractable AES-256 token keys on src in ${SECS[create]} s" \
  "($(rate "$N" "${SECS[create]}") keys/s, one hsmsh -e loop)"

# ---------------------------------------------------------------- 2-3. references and hsmsh

summary() {   # NAME MIGRATED SKIPPED: checks the run's summary line
  local line want
  line=$(grep '"event":"summary"' "$work/$1.out" || true)
  [ -n "$line" ] || die "$1: no summary line in its output"
  for want in "\"migrated\":$2" "\"skipped\":$3" '"failed":0' '"blocked":0'; do
    case $line in *"$want"[,\}]*) ;; *) die "$1: expected $want in the summary, got: $line" ;; esac
  done
}

# The timed runs, interleaved and repeated REPEAT times (the machine's other load and the
# file system's writeback vary from second to second: the table shows medians and spreads).
echo
echo "2. reference: bench/raw_migrate.c (one process, every CK_RV checked): rsa-aes and the"
echo "   kwp floor; 3. hsmsh run generic/migrate, then the same command again (all skipped)."
echo "   Each migration starts from an empty dst token; $REPEAT round(s)"
run_raw() {   # MODE ROUND
  reset_dst
  timed "raw_${1/-aes/}.$2" "$work/raw_migrate" "$MODULE" "$PIN" "$1" src dst
  expect_count dst "$N" "raw $1"
}
run_hsmsh() {   # ROUND: a migration into an empty dst, then the same command again
  reset_dst
  timed "mig.$1" "$HSMSH" run generic/migrate "from=$SRC" "to=$DST" --json --journal "$work/journal.$1"
  summary "mig.$1" "$N" 0
  expect_count dst "$N" "hsmsh migrate"
  timed "rerun.$1" "$HSMSH" run generic/migrate "from=$SRC" "to=$DST" --json \
    --journal "$work/rejournal.$1"
  summary "rerun.$1" 0 "$N"
  expect_count dst "$N" "hsmsh re-run"
  # The same migration without the SoftHSM2 guard (backends/softhsm2/guard.c): its cost.
  reset_dst
  HSMSH_SOFTHSM2_GUARD=0 timed "unguarded.$1" "$HSMSH" run generic/migrate "from=$SRC" \
    "to=$DST" --json --journal "$work/ujournal.$1"
  summary "unguarded.$1" "$N" 0
  expect_count dst "$N" "hsmsh migrate, guard off"
}
# Odd rounds run raw rsa-aes just before hsmsh, even rounds just after (ABBA), so a drift in
# the machine's load weighs on both; each round's own ratio is kept as well.
RATIOS=()
for ((r = 1; r <= REPEAT; r++)); do
  if ((r % 2)); then run_raw rsa-aes "$r"; run_hsmsh "$r"
  else run_hsmsh "$r"; run_raw rsa-aes "$r"; fi
  run_raw kwp "$r"
  RATIOS+=("$(awk -v a="${SECS[raw_rsa.$r]}" -v b="${SECS[mig.$r]}" 'BEGIN { printf "%.2f", a / b }')")
  echo "   round $r: raw rsa-aes ${SECS[raw_rsa.$r]} s, hsmsh ${SECS[mig.$r]} s" \
    "(ratio ${RATIOS[-1]}), hsmsh re-run ${SECS[rerun.$r]} s, raw kwp ${SECS[raw_kwp.$r]} s"
  for k in raw_rsa raw_kwp; do
    sed -n 's/^raw_migrate: per key (ms):/     '"$k"' per key (ms):/p' "$work/$k.$r.out"
  done
done
echo "   journal: $(wc -l < "$work/journal.1") lines for a migration, $(wc -l < "$work/rejournal.1")" \
  "for a re-run (each line appended with fsync)"

# Plan only: on the full destination (everything would be skipped), then on an empty one.
timed dryfull "$HSMSH" run generic/migrate "from=$SRC" "to=$DST" --json --dry-run
reset_dst
timed dry "$HSMSH" run generic/migrate "from=$SRC" "to=$DST" --json --dry-run
plans=$(grep -c '"event":"plan"' "$work/dry.out" || true)
wraps=$(grep '"event":"plan"' "$work/dry.out" | grep -c '"strategy":"wrap"' || true)
if [ "$plans" != "$N" ] || [ "$wraps" != "$N" ]; then
  die "dry-run: expected $N plan rows with strategy wrap, got $plans rows, $wraps wrap"
fi
expect_count dst 0 "dry-run"
echo "   dry-run (plan only): ${SECS[dry]} s on an empty dst, ${SECS[dryfull]} s on a full one"

# ---------------------------------------------------------------- 4. pkcs11-tool

echo
p11tool_note=
if [ "$P11TOOL_N" -eq 0 ]; then
  echo "4. pkcs11-tool loop: skipped (BENCH_P11TOOL_N=0)"
elif ! command -v pkcs11-tool > /dev/null; then
  echo "4. pkcs11-tool loop: skipped (no pkcs11-tool)"
  P11TOOL_N=0
else
  # pkcs11-tool (OpenSC 0.23) has --wrap/--unwrap, but each call is its own process, so
  # session objects (the RSA transport pair, the ephemeral AES keys of RSA-AES) cannot
  # outlive it: the loop can only do the KWP floor, with a token KEK present on both tokens.
  # --key-type AES:0 keeps CKA_VALUE_LEN out of the unwrap template (SoftHSM2 refuses it).
  echo "4. pkcs11-tool loop: AES-KWP under a token KEK, two processes per key (wrap on src," \
    "unwrap on dst), first $P11TOOL_N keys"
  reset_dst
  "$HSMSH" -e "
local v = assert(hsm.token('$SRC'):random(32))
for _, uri in ipairs{'$SRC', '$DST'} do
  assert(hsm.token(uri):create{CKA_CLASS = 'CKO_SECRET_KEY', CKA_KEY_TYPE = 'CKK_AES',
    CKA_TOKEN = true, CKA_PRIVATE = true, CKA_SENSITIVE = true, CKA_EXTRACTABLE = false,
    CKA_WRAP = true, CKA_UNWRAP = true, CKA_VALUE = v, CKA_LABEL = 'bench-kek', CKA_ID = '\\xfe\\xed'})
end" > /dev/null
  p11tool_loop() {
    local i id label t0 limit=120
    t0=$EPOCHREALTIME
    for ((i = 1; i <= P11TOOL_N; i++)); do
      id=$(printf '%08x' "$i")
      label=$(printf 'k%04d' "$i")
      pkcs11-tool --module "$MODULE" --token-label src --login --pin "$PIN" --wrap \
        --mechanism 0x210A --id feed --application-id "$id" -o "$work/blob" > /dev/null || return 1
      pkcs11-tool --module "$MODULE" --token-label dst --login --pin "$PIN" --unwrap \
        --mechanism 0x210A --id feed -i "$work/blob" --key-type AES:0 --application-id "$id" \
        --application-label "$label" --extractable --sensitive > /dev/null || return 1
      if awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
        echo "p11tool: stopped after $i keys (over ${limit} s)" >&2
        echo "$i" > "$work/p11tool.done"
        return 0
      fi
    done
    echo "$P11TOOL_N" > "$work/p11tool.done"
  }
  timed p11tool p11tool_loop
  done_n=$(cat "$work/p11tool.done")
  [ "$done_n" = "$P11TOOL_N" ] || p11tool_note=" (stopped at the time limit)"
  P11TOOL_N=$done_n
  expect_count dst "$((P11TOOL_N + 1))" "pkcs11-tool loop"
  echo "   $P11TOOL_N keys in ${SECS[p11tool]} s$p11tool_note"
  # The KEK goes again: src holds just the N keys for what follows.
  "$HSMSH" -e "for _, o in ipairs(assert(hsm.token('$SRC'):find_all{CKA_LABEL = 'bench-kek'})) do
    assert(o:destroy()) end"
  expect_count src "$N" "removing the pkcs11-tool KEK"
fi

# ---------------------------------------------------------------- 5. summary

# median VALUES...: the median of numbers.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { printf "%.3f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# stats NAME: "median min max peak_rss_kB median_cpu_s" over the rounds of NAME (or NAME
# alone); "-" for what was not measured.
stats() {
  local r names=() vals=() cpus=() rss=0 lo hi
  if [ -n "${SECS[$1]:-}" ]; then names=("$1")
  else for ((r = 1; r <= REPEAT; r++)); do names+=("$1.$r"); done; fi
  for r in "${names[@]}"; do
    vals+=("${SECS[$r]}")
    [ -z "${CPU[$r]:-}" ] || cpus+=("${CPU[$r]}")
    [ "${RSS[$r]:-0}" -le "$rss" ] || rss=${RSS[$r]}
  done
  lo=$(printf '%s\n' "${vals[@]}" | sort -g | head -n 1)
  hi=$(printf '%s\n' "${vals[@]}" | sort -g | tail -n 1)
  echo "$(median "${vals[@]}") $lo $hi $([ "$rss" != 0 ] && echo "$rss" || echo -)" \
    "$([ ${#cpus[@]} -gt 0 ] && median "${cpus[@]}" || echo -)"
}

read -r raw _ _ _ <<< "$(stats raw_rsa)"
rawrate=$(rate "$N" "$raw")
echo
echo "== summary: N=$N keys, token directory on $fsnote, median of $REPEAT round(s)"
echo "   seconds: whole-process wall time (module load, login, transport setup, enumeration,"
echo "   the loop); keys/s = keys / seconds; ratio = keys/s relative to raw rsa-aes (>1 = faster)"
echo "   cpu s: user+sys of the process (median); peak RSS: /usr/bin/time's maximum resident set"
printf '%-34s %8s %15s %8s %6s %7s %10s\n' run seconds "(min-max)" keys/s ratio "cpu s" \
  "peak RSS"
row() {   # LABEL NAME KEYS
  local med lo hi rss cpu spread
  read -r med lo hi rss cpu <<< "$(stats "$2")"
  spread=$([ "$lo" = "$hi" ] && echo "" || echo "($lo-$hi)")
  printf '%-34s %8s %15s %8s %6s %7s %10s\n' "$1" "$med" "$spread" "$(rate "$3" "$med")" \
    "$(ratio "$(rate "$3" "$med")" "$rawrate")" "$cpu" "$([ "$rss" != - ] && echo "$rss kB")"
}
row "raw rsa-aes (C)" raw_rsa "$N"
row "raw kwp floor (C)" raw_kwp "$N"
row "hsmsh migrate" mig "$N"
row "hsmsh migrate, SoftHSM2 guard off" unguarded "$N"
row "hsmsh re-run (all skipped)" rerun "$N"
row "hsmsh dry-run (plan, dst empty)" dry "$N"
row "hsmsh dry-run (plan, dst full)" dryfull "$N"
if [ "$P11TOOL_N" -gt 0 ]; then
  row "pkcs11-tool kwp ($P11TOOL_N keys)" p11tool "$P11TOOL_N"
  [ -z "$p11tool_note" ] || echo "(pkcs11-tool loop:$p11tool_note)"
fi
[ -n "$TIMEV" ] || echo "(peak RSS not measured: no /usr/bin/time)"
loops=$(for ((r = 1; r <= REPEAT; r++)); do
  sed -n 's/.* loop_keys_per_s=\([0-9.]*\).*/\1/p' "$work/raw_rsa.$r.out"; done | paste -sd' ')
echo "raw rsa-aes loop alone (no setup), keys/s per round: $loops"
echo "key creation on src: $(rate "$N" "${SECS[create]}") keys/s"
read -r mig _ _ _ <<< "$(stats mig)"
read -r unguarded _ _ _ <<< "$(stats unguarded)"
echo "SoftHSM2 guard: migrate with it / without it: $(awk -v a="$mig" -v b="$unguarded" \
  'BEGIN { printf "%.2f", a / b }') of the time (flock per call, exclusive for writes)"
echo "hsmsh migrate / raw rsa-aes: $(ratio "$(rate "$N" "$mig")" "$rawrate") from the medians;" \
  "per round ${RATIOS[*]}, median $(median "${RATIOS[@]}" | awk '{ printf "%.2f", $1 }')" \
  "(goal: >= 0.90)"

# ---------------------------------------------------------------- profile (optional)

[ "${BENCH_PROFILE:-0}" = 1 ] || exit 0

echo
echo "== profile (BENCH_PROFILE=1): one more raw rsa-aes run and one more hsmsh migrate run,"
echo "   each through tests/fault/faultp11.c (no rules: a pass-through that counts calls and"
echo "   times them inside the module); hsmsh also under bench/profile.lua (wall time per stdlib"
echo "   function, exclusive of wrapped callees)"
# shellcheck disable=SC2086 # pkg-config's flags are words
cc -O2 -std=c11 -Wall -Wextra -D_GNU_SOURCE -shared -fPIC $P11KIT_CFLAGS \
  "$here/../tests/fault/faultp11.c" -o "$work/libprof.so" -ldl -lpthread
PROF=$work/libprof.so
export HSMSH_FAULT_MODULE=$MODULE
unset HSMSH_FAULT HSMSH_FAULT_LOG
reset_dst
HSMSH_FAULT_COUNT=$work/prof.raw \
  timed prof_raw "$work/raw_migrate" "$PROF" "$PIN" rsa-aes src dst
expect_count dst "$N" "profiled raw rsa-aes"
reset_dst
PSRC="pkcs11:token=src?module-path=$PROF&pin-value=$PIN"
PDST="pkcs11:token=dst?module-path=$PROF&pin-value=$PIN"
HSMSH_FAULT_COUNT=$work/prof.hsmsh \
  timed prof_mig "$HSMSH" "$here/profile.lua" "$work/prof.lua" run generic/migrate \
  "from=$PSRC" "to=$PDST" --json --journal "$work/journal3"
summary prof_mig "$N" 0
echo "   wall: raw ${SECS[prof_raw]} s, hsmsh ${SECS[prof_mig]} s (with the profilers)"
echo
echo "PKCS#11 calls and time inside the module, per key (ms), raw rsa-aes vs hsmsh migrate:"
awk -v n="$N" -v wr="${SECS[prof_raw]}" -v wh="${SECS[prof_mig]}" '
  FNR == 1 { file++ }
  { if (!($1 in seen) && $1 != "total") { seen[$1] = 1; order[++k] = $1 }
    c[file, $1] = $2; t[file, $1] = $3 }
  function line(label, nm) {
    printf "   %-22s %10.2f %10.3f %12.2f %10.3f\n", label, c[1, nm] / n, 1000 * t[1, nm] / n,
      c[2, nm] / n, 1000 * t[2, nm] / n
  }
  END {
    printf "   %-22s %10s %10s %12s %10s\n", "function", "raw calls", "raw ms", "hsmsh calls", "hsmsh ms"
    for (i = 1; i <= k; i++) if (c[1, order[i]] + c[2, order[i]] > 0) line(order[i], order[i])
    line("all PKCS#11 calls", "total")
    printf "   %-22s %10s %10.3f %12s %10.3f\n", "process wall", "", 1000 * wr / n, "", 1000 * wh / n
  }' "$work/prof.raw" "$work/prof.hsmsh"
echo
echo "hsmsh time per key by stdlib function (ms, exclusive; inclusive in brackets):"
sort -t$'\t' -k4,4gr "$work/prof.lua" | awk -F'\t' -v n="$N" '
  { printf "   %-46s %8d calls %9.3f  [%9.3f]\n", $1, $2, 1000 * $4 / n, 1000 * $3 / n }'
