#!/usr/bin/env bash
# bench/archive.sh [HSMSH] [N]: backup of N keys to an archive file and restore onto an empty
# token (protectserver/backup-file, two components) against the raw C loop that does the same
# key work (raw_migrate.c kwp: C_WrapKey under an AES-256 KEK, C_UnwrapKey into a token
# object), measured in the same run on the same token directory, and against the same loop
# unwrapping into a session object copied to the token (raw_migrate.c kwp-copy): the call
# sequence hsmsh itself uses on SoftHSM2 (attrs.QUIRKS unwrap_via_session). Issue 4's goal:
# hsmsh's backup + restore at >= 0.9x the raw loop. Prints figures; not a test.
# Environment: BENCH_DIR (default /tmp; /dev/shm for tmpfs), BENCH_REPEAT (default 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
HSMSH=$(realpath "${1:-$here/../build/hsmsh}")
N=${2:-1000}
REPEAT=${BENCH_REPEAT:-3}
MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
work=$(realpath "$(mktemp -d "${BENCH_DIR:-/tmp}/hsmsh-archive-bench.XXXXXX")")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
init() { softhsm2-util --init-token --free --label "$1" --pin 1234 --so-pin 12345678 > /dev/null; }
reset() { softhsm2-util --delete-token --token "$1" > /dev/null; init "$1"; }
now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# shellcheck disable=SC2046 # pkg-config's flags are words
cc -O2 -std=c11 -Wall -Wextra $(pkg-config --cflags p11-kit-1) "$here/raw_migrate.c" -ldl -o "$work/raw"
init src; init dst
"$HSMSH" -e "local s = hsm.token('pkcs11:token=src?pin-value=1234')
  for i = 1, $N do
    assert(s:generate{type = 'AES', bits = 256, label = ('k%04d'):format(i), id = string.pack('>I4', i),
                      CKA_EXTRACTABLE = true, CKA_SENSITIVE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})
  end"
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
run() { "$HSMSH" run protectserver/backup-file token="pkcs11:token=$1?pin-value=1234" file="$work/a.arc" \
          components="file:$work/c1,file:$work/c2" kcvs=9c1884,62a639 "${@:2}" > "$work/out" 2> "$work/err" \
          || { cat "$work/err" >&2; exit 1; }; }

echo "== archive benchmark: N=$N AES-256 keys, token directory on $(stat -f -c %T "$work/tokens"), $(nproc) cpus"
declare -a RAW RAWC HB HR
for r in $(seq "$REPEAT"); do
  reset dst
  t0=$(now); "$work/raw" "$MODULE" 1234 kwp src dst > /dev/null; t1=$(now)
  RAW+=("$(secs "$t0" "$t1")")
  reset dst
  t0=$(now); "$work/raw" "$MODULE" 1234 kwp-copy src dst > /dev/null; t1=$(now)
  RAWC+=("$(secs "$t0" "$t1")")
  reset dst; rm -f "$work/a.arc"
  t0=$(now); run src side=backup; t1=$(now); run dst side=restore --json; t2=$(now)
  grep -q "\"migrated\":$N" "$work/out" || { echo "restore did not restore $N keys: $(tail -1 "$work/out")" >&2; exit 1; }
  HB+=("$(secs "$t0" "$t1")"); HR+=("$(secs "$t1" "$t2")")
  echo "round $r: raw wrap+unwrap loop ${RAW[-1]} s, via session copy ${RAWC[-1]} s; hsmsh backup ${HB[-1]} s + restore ${HR[-1]} s ($(stat -c %s "$work/a.arc") bytes)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
raw=$(median "${RAW[@]}"); rawc=$(median "${RAWC[@]}"); hb=$(median "${HB[@]}"); hr=$(median "${HR[@]}")
awk -v n="$N" -v raw="$raw" -v rawc="$rawc" -v hb="$hb" -v hr="$hr" 'BEGIN {
  printf "%-34s %8s %9s %6s\n", "run (median)", "seconds", "keys/s", "ratio"
  printf "%-34s %8.3f %9.1f %6.2f\n", "raw C wrap + unwrap-to-token loop", raw, n / raw, 1
  printf "%-34s %8.3f %9.1f %6.2f\n", "raw C loop, unwrap + copy to token", rawc, n / rawc, raw / rawc
  printf "%-34s %8.3f %9.1f %6s\n", "hsmsh backup", hb, n / hb, "-"
  printf "%-34s %8.3f %9.1f %6s\n", "hsmsh restore", hr, n / hr, "-"
  printf "%-34s %8.3f %9.1f %6.2f  (goal >= 0.90)\n", "hsmsh backup + restore", hb + hr, n / (hb + hr), raw / (hb + hr)
  printf "%-34s %8s %9s %6.2f  (against the same call sequence)\n", "  vs the unwrap + copy loop", "", "", rawc / (hb + hr)
}'
