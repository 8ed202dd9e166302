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
targets=(fuzz_share fuzz_combine)

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
