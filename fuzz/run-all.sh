#!/usr/bin/env bash
# Fuzz every reader for SECONDS each (default 600), JOBS targets at a time (default 2),
# starting from seeds/ and the corpus of earlier runs (corpus/, not committed). A crash
# stops its target and leaves the input in artifacts/TARGET/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...
# and add it to tests/fuzz_regressions/TARGET/ (replayed by `cargo test`).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets stable Rust build
# with the sanitizer flags cargo-fuzz passes.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-600}
JOBS=${JOBS:-2}
export RUSTC_BOOTSTRAP=1
TARGETS=(model_text graph_text idx npy weights image onnx)
cargo fuzz build -O || exit 1
run() {
    local t=$1
    mkdir -p "corpus/$t" "artifacts/$t"
    cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        >"$t.log" 2>&1
    local rc=$?
    echo "$t: exit $rc; $(grep -E '^stat::number_of_executed_units' "$t.log" | tail -1); $(grep -E '#[0-9]+.*(DONE|cov:)' "$t.log" | tail -1)"
}
for t in "${TARGETS[@]}"; do
    while (( $(jobs -r | wc -l) >= JOBS )); do sleep 1; done
    run "$t" &
done
wait
