#!/usr/bin/env bash
# Runs the whole streamedge test suite, as CI does (.ci/run calls this):
#   1. installs missing Debian packages (apt-get, non-interactive; needs root or sudo) and the
#      deployment tests' npm packages (npm ci in tests/deploy, from its lock file)
#   2. release build (build/release) + ctest, then a real player: scripts/player_test.sh (ffmpeg
#      plays the simulator's live HLS and live DASH through streamedge for 30 s each)
#   3. AddressSanitizer + UndefinedBehaviorSanitizer build (build/asan) + ctest
#   4. ThreadSanitizer build of what the scenario tests run (build/tsan: streamedge, origin_sim,
#      scenario_tests) + ctest -L scenario, stopping at the first report
#   5. clang/libFuzzer build (build/fuzz) and every tests/fuzz/*_fuzz.cc target for a bounded time
# and prints which stages passed. Exits non-zero on the first failure.
#
# Knobs (environment):
#   STREAMEDGE_SKIP_PLAYER=1 skip the player test of stage 2
#   STREAMEDGE_SKIP_ASAN=1   skip stage 3
#   STREAMEDGE_SKIP_TSAN=1   skip stage 4
#   STREAMEDGE_SKIP_FUZZ=1   skip stage 5
#   FUZZ_SECONDS=30          libFuzzer -max_total_time per target
#   STREAMEDGE_JOBS=2        parallel build jobs
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STREAMEDGE_ROOT"

JOBS=${STREAMEDGE_JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# A data race report ends the process (exit code 66) and fails the test; the scenario fixtures
# also look for "Sanitizer" in the proxy's log. No suppressions file: none is needed.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
export CTEST_OUTPUT_ON_FAILURE=1

STAGES=()          # "name|PASS|detail" lines for the summary
TESTS_PASSED=0     # summed over every ctest run, plus one per fuzz target
TESTS_FAILED=0
START=$SECONDS

summary() {
  echo
  printf '%s==> summary (%ds)%s\n' "$_c_bold" "$((SECONDS - START))" "$_c_off"
  local s name res detail
  for s in "${STAGES[@]}"; do
    IFS='|' read -r name res detail <<<"$s"
    printf '  %-26s %-5s %s\n' "$name" "$res" "$detail"
  done
  echo "tests: $TESTS_PASSED passed, $TESTS_FAILED failed"
}

# fail STAGE MESSAGE: records the failure, prints the summary and exits 1.
fail() {
  STAGES+=("$1|FAIL|$2")
  printf '%serror:%s stage "%s" failed: %s\n' "$_c_red" "$_c_off" "$1" "$2" >&2
  summary
  exit 1
}
pass() { STAGES+=("$1|PASS|${2:-}"); ok "==> stage \"$1\" passed${2:+ ($2)}"; }
skip() { STAGES+=("$1|SKIP|$2"); log "stage \"$1\" skipped: $2"; }

# run_ctest STAGE BUILD_DIR [RUN...]: by default the unit and other non-scenario tests in
# parallel, then the scenario tests (which start real processes on loopback ports) one at a
# time; or the given ctest argument lists. Adds to the totals.
run_ctest() {
  local stage=$1 dir=$2 out rc counted=0
  shift 2
  out=$(mktemp)
  local -a runs=(
    "-LE scenario -j$JOBS --no-tests=error"
    "-L scenario -j1 --no-tests=ignore"
  )
  if (($# > 0)); then runs=("$@"); fi
  local args
  for args in "${runs[@]}"; do
    log "$stage: ctest $args"
    rc=0
    # shellcheck disable=SC2086  # $args is a list of flags on purpose
    ctest --test-dir "$dir" --output-on-failure --timeout 600 $args 2>&1 | tee "$out" || rc=$?
    # "100% tests passed, 0 tests failed out of 42"
    local line
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$out" | tail -n1 || true)
    if [[ -n "$line" ]]; then
      local failed total
      failed=$(sed -E 's/.*passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
      total=$(sed -E 's/.*failed out of ([0-9]+).*/\1/' <<<"$line")
      TESTS_FAILED=$((TESTS_FAILED + failed))
      TESTS_PASSED=$((TESTS_PASSED + total - failed))
      counted=$((counted + total))
    fi
    if ((rc != 0)); then
      rm -f "$out"
      fail "$stage" "ctest $args exited $rc (see the output above)"
    fi
  done
  rm -f "$out"
  pass "$stage" "$counted tests"
}

# ---- 1. packages -------------------------------------------------------------------------
log "checking packages"
pkgs=("${STREAMEDGE_BUILD_PACKAGES[@]}")
[[ "${STREAMEDGE_SKIP_FUZZ:-0}" == 1 ]] || pkgs+=("${STREAMEDGE_TEST_PACKAGES[@]}")
( ensure_packages "${pkgs[@]}" ) || fail packages "could not install: ${pkgs[*]}"
( ensure_packages --no-start-services "${STREAMEDGE_SCENARIO_PACKAGES[@]}" ) ||
  fail packages "could not install: ${STREAMEDGE_SCENARIO_PACKAGES[*]}"
( ensure_deploy_test_deps ) || fail packages "could not install the deployment test tools (node, npm ci in tests/deploy)"
pass packages

# ---- 2. release --------------------------------------------------------------------------
log "release build (build/release)"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMEDGE_WERROR=ON ||
  fail "release build" "cmake configure failed"
cmake --build build/release -j"$JOBS" || fail "release build" "compile failed"
pass "release build"
run_ctest "release tests" build/release

# A real player (ffmpeg, installed by the script if missing) through the release build: once,
# not per build type; about 70 s.
if [[ "${STREAMEDGE_SKIP_PLAYER:-0}" == 1 ]]; then
  skip "player test" "STREAMEDGE_SKIP_PLAYER=1"
else
  log "player test (scripts/player_test.sh)"
  if STREAMEDGE_SKIP_BUILD=1 scripts/player_test.sh; then
    TESTS_PASSED=$((TESTS_PASSED + 1))
    pass "player test" "ffmpeg played live HLS and DASH through streamedge"
  else
    TESTS_FAILED=$((TESTS_FAILED + 1))
    fail "player test" "scripts/player_test.sh failed (see the output above)"
  fi
fi

# ---- 3. ASan + UBSan ---------------------------------------------------------------------
if [[ "${STREAMEDGE_SKIP_ASAN:-0}" == 1 ]]; then
  skip "asan+ubsan build" "STREAMEDGE_SKIP_ASAN=1"
else
  log "ASan+UBSan build (build/asan)"
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMEDGE_WERROR=ON -DSTREAMEDGE_SANITIZE=ON ||
    fail "asan+ubsan build" "cmake configure failed"
  cmake --build build/asan -j"$JOBS" || fail "asan+ubsan build" "compile failed"
  pass "asan+ubsan build"
  run_ctest "asan+ubsan tests" build/asan
fi

# ---- 4. ThreadSanitizer ------------------------------------------------------------------
# The scenario tests are where the threads meet (workers, the SSD writer, the access-log
# writer, cross-worker wake-ups), so only what they run is built with TSan: the proxy, the
# origin simulator and the test binary; the unit tests stay with the release and ASan stages,
# which keeps CI time in bounds. TSan cannot share a build with ASan, hence its own directory.
if [[ "${STREAMEDGE_SKIP_TSAN:-0}" == 1 ]]; then
  skip "tsan build" "STREAMEDGE_SKIP_TSAN=1"
else
  log "ThreadSanitizer build (build/tsan)"
  cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMEDGE_WERROR=ON -DSTREAMEDGE_TSAN=ON ||
    fail "tsan build" "cmake configure failed"
  cmake --build build/tsan -j"$JOBS" --target streamedge origin_sim scenario_tests ||
    fail "tsan build" "compile failed"
  pass "tsan build"
  run_ctest "tsan scenario tests" build/tsan "-L scenario -j1 --no-tests=error"
fi

# ---- 5. fuzz -----------------------------------------------------------------------------
if [[ "${STREAMEDGE_SKIP_FUZZ:-0}" == 1 ]]; then
  skip fuzz "STREAMEDGE_SKIP_FUZZ=1"
elif ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  skip fuzz "clang not found"
else
  shopt -s nullglob
  fuzz_sources=(tests/fuzz/*_fuzz.cc)
  shopt -u nullglob
  if ((${#fuzz_sources[@]} == 0)); then
    skip fuzz "no tests/fuzz/*_fuzz.cc targets"
  else
    names=()
    for src in "${fuzz_sources[@]}"; do
      n=${src##*/}
      names+=("${n%.cc}")
    done
    log "fuzz build (build/fuzz): ${names[*]}"
    CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMEDGE_WERROR=ON \
      -DSTREAMEDGE_FUZZ=ON || fail "fuzz build" "cmake configure failed"
    targets=()
    for n in "${names[@]}"; do targets+=(--target "$n"); done
    cmake --build build/fuzz -j"$JOBS" "${targets[@]}" || fail "fuzz build" "compile failed"
    pass "fuzz build" "${#names[@]} targets"

    fuzz_tmp=$(mktemp -d)
    trap 'rm -rf "$fuzz_tmp"' EXIT
    for n in "${names[@]}"; do
      bin=$(find build/fuzz -type f -name "$n" -perm -u+x | head -n1)
      [[ -n "$bin" ]] || fail "fuzz $n" "binary $n not found under build/fuzz"
      corpus="$fuzz_tmp/corpus-$n"
      mkdir -p "$corpus"
      seed="tests/fuzz/corpus/${n%_fuzz}"
      if [[ -d "$seed" ]]; then cp -R "$seed/." "$corpus/"; fi
      artifacts="$STREAMEDGE_ROOT/build/fuzz/artifacts/$n"
      mkdir -p "$artifacts"
      flog="$fuzz_tmp/$n.log"
      log "fuzz $n for ${FUZZ_SECONDS}s (seed corpus: $( [[ -d "$seed" ]] && echo "$seed" || echo none))"
      rc=0
      "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$flog" 2>&1 || rc=$?
      if ((rc != 0)); then
        tail -n 80 "$flog" >&2
        TESTS_FAILED=$((TESTS_FAILED + 1))
        fail "fuzz $n" "exit $rc; crash input saved under $artifacts/ (reproduce: $bin FILE)"
      fi
      nruns=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$flog" | grep -Eo '[0-9]+$' || echo '?')
      TESTS_PASSED=$((TESTS_PASSED + 1))
      pass "fuzz $n" "$nruns runs in ${FUZZ_SECONDS}s"
    done
  fi
fi

summary
