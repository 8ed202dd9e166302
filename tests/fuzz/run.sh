#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz (or $FUZZ_BUILD) and runs each one
# for FUZZ_SECONDS (default 60) from freshly made seeds plus the corpus of earlier runs.
# Exits non-zero on any crash, sanitizer report, leak or timeout; the reproducer is left in
# <build>/fuzz/artifacts/<target>/ (replay: <build>/tests/fuzz/<target> FILE).
#
# Needs, besides the project's build dependencies (.ci/setup), Debian 12's
#   clang  libclang-rt-14-dev   (the latter ships libclang_rt.fuzzer-x86_64.a)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
secs=${FUZZ_SECONDS:-60}
targets=(fuzz_share fuzz_combine fuzz_parsers)

for tool in clang cmake; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
done
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DHSMSH_FUZZ=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" fuzz_seeds >/dev/null

work=$build/fuzz
rm -rf "$work/seeds"
mkdir -p "$work"
"$build/tests/fuzz/fuzz_seeds" "$work/seeds"
# fuzz_parsers starts from a real archive, SKS blob, identity certificate and CSR, made by hsmsh (the main build)
# on a throwaway SoftHSM2 token.
mkdir -p "$work/seeds/fuzz_parsers"
hsmsh=${HSMSH:-$root/build/hsmsh}
if [ ! -x "$hsmsh" ]; then
  echo "fuzz: $hsmsh is missing: build it first (the real seeds are made with it)" >&2
  exit 1
fi
tok=$(mktemp -d)
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$tok" > "$tok/conf"
SOFTHSM2_CONF=$tok/conf softhsm2-util --init-token --free --label seed --pin 1234 --so-pin 12345678 >/dev/null
SOFTHSM2_CONF=$tok/conf "$hsmsh" -e "
  local hsm, archive, sks = require('hsm'), require('hsm.archive'), require('hsm.sks')
  local s = hsm.token('pkcs11:token=seed?pin-value=1234')
  assert(s:generate{type='AES', bits=128, label='k', CKA_EXTRACTABLE=true, CKA_ENCRYPT=true, CKA_DECRYPT=true})
  assert(s:create{CKA_CLASS='CKO_DATA', CKA_TOKEN=true, CKA_LABEL='d', CKA_VALUE='v'})
  local key = assert(s:generate{type='AES', bits=256, token=false, CKA_WRAP=true, CKA_UNWRAP=true})
  archive.backup(s, key, '$work/seeds/fuzz_parsers/archive')
  local smk = sks.smk(s)
  local f = assert(io.open('$work/seeds/fuzz_parsers/sks', 'wb'))
  f:write(sks.extract(s, smk, {assert(s:generate{type='AES', bits=128, token=false, CKA_EXTRACTABLE=true})})[1])
  f:close()
  local trust = require('hsm.trust')
  for name, der in pairs({pic = trust.gen_selfsigned(s), csr = trust.gen_csr(s, {yes = true})}) do
    f = assert(io.open('$work/seeds/fuzz_parsers/' .. name, 'wb')); f:write(der); f:close()
  end" || { echo "fuzz: making the real seeds failed" >&2; exit 1; }
rm -rf "$tok"
for seed in archive sks pic csr; do
  [ -s "$work/seeds/fuzz_parsers/$seed" ] || { echo "fuzz: the real seed $seed was not made" >&2; exit 1; }
done

status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  echo "fuzz: $t for ${secs}s" >&2
  # New inputs go to the first directory (kept between runs); the seeds are read only.
  if ! "$build/tests/fuzz/$t" -max_total_time="$secs" -max_len=8400 -timeout=20 \
       -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
       "$work/corpus/$t" "$work/seeds/$t" >"$work/$t.log" 2>&1; then
    status=1
    echo "fuzz: $t FAILED (log: $work/$t.log)" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$work/$t.log" >&2 || tail -20 "$work/$t.log" >&2
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  cov=$(sed -n 's/^#[0-9]*[[:space:]]*DONE.*cov: \([0-9]*\).*/\1/p' "$work/$t.log")
  echo "fuzz: $t ok: ${runs:-?} executions, coverage ${cov:-?}, no crash" >&2
done
exit $status
