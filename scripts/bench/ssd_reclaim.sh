#!/usr/bin/env bash
# SSD reclaim policy comparison: FIFO against reinsertion of objects read while resident, on
# the same synthetic video request mix (tests/support/ssd_trace_main.cc: Zipf VOD sessions
# watching in order plus live channels), through the real RAM tier and the real SSD store on a
# file on this machine's disk. Reports, per policy and seed, where requests were answered and
# what the SSD wrote. The policy that sends fewer requests to the origin for an acceptable
# write cost is the better one for video.
#
#   scripts/bench/ssd_reclaim.sh            # builds, then runs the matrix below
#   BENCH_SEEDS="1 2 3" BENCH_REQUESTS=200000 BENCH_STORE_DIR=/var/tmp scripts/bench/ssd_reclaim.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

seeds=${BENCH_SEEDS:-"1 2 3"}
requests=${BENCH_REQUESTS:-200000}
store="${BENCH_STORE_DIR:-/var/tmp}/streamedge-reclaim-$$.store"
build_dir=${BUILD_DIR:-build/release}

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j2 --target ssd_trace >/dev/null
fi
trace="$build_dir/tests/ssd_trace"
trap 'rm -f "$store"' EXIT

# name | arguments: 64 KiB segments (2 MiB segments scaled down 32x, with the sizes below),
# RAM 16 MiB, SSD 256 MiB in 1 MiB regions.
mixes=(
  "vod+live 30%|--titles 500 --ssd-mib 256 --ram-mib 16"
  "vod only|--titles 500 --ssd-mib 256 --ram-mib 16 --live-share 0"
  "long tail (2000 titles)|--titles 2000 --ssd-mib 256 --ram-mib 16"
  "steep (zipf 1.0, SSD 128 MiB)|--titles 500 --ssd-mib 128 --ram-mib 16 --zipf 1.0"
)

printf '| mix | seed | policy | RAM hits | SSD hits | origin | SSD written MiB | reinserted MiB |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for m in "${mixes[@]}"; do
  name=${m%%|*}
  args=${m#*|}
  for seed in $seeds; do
    for policy in fifo reinsert; do
      # shellcheck disable=SC2086
      line=$("$trace" --store "$store" --reclaim "$policy" --requests "$requests" --seed "$seed" $args)
      get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
      printf '| %s | %s | %s | %.1f %% | %.1f %% | %.1f %% | %s | %s |\n' "$name" "$seed" "$policy" \
        "$(awk -v v="$(get ram_hit)" 'BEGIN{print v*100}')" \
        "$(awk -v v="$(get ssd_hit)" 'BEGIN{print v*100}')" \
        "$(awk -v v="$(get origin)" 'BEGIN{print v*100}')" \
        "$(get ssd_written_mib)" "$(get reinserted_mib)"
      if [[ "$(get dropped)" != 0 || "$(get corrupt)" != 0 ]]; then
        log "warning: $policy seed $seed: dropped=$(get dropped) corrupt=$(get corrupt)"
      fi
    done
  done
done
