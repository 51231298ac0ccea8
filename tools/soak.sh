#!/usr/bin/env bash
# Soak test of crash-proof training: train a model once without interruption, then again
# under ROUNDS random interruptions (kill -9, SIGTERM, SIGINT or SIGHUP at a random moment:
# while compiling, loading data, training, writing a checkpoint or saving), resuming from
# the run's checkpoint each time (from scratch if none was written yet), and require the
# two runs' final weights to be the same bytes.
#   tools/soak.sh [ROUNDS] [MODEL] [STEPS]     (defaults: 30, examples/lenet5.nn, 1200)
#   EVERY=N (checkpoint interval, 50), THREADS=N (2)
# Uses target/release/percept (built if missing) and data/mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-30}
MODEL=$(realpath "${2:-examples/lenet5.nn}")
STEPS=${3:-1200}
EVERY=${EVERY:-50}
THREADS=${THREADS:-2}
[[ -x target/release/percept ]] || cargo build --release
BIN=$(realpath target/release/percept)
DATA=$(realpath data/mnist)
WORK=$(mktemp -d /tmp/percept-soak.XXXXXX)
name=$(basename "$MODEL" .nn)
ck=runs/$name/checkpoint.safetensors
train=("$BIN" train "$MODEL" --data "$DATA" --steps "$STEPS" --checkpoint-every "$EVERY" --threads "$THREADS"
    --save w.safetensors)

echo "soak: $name, $STEPS steps, a checkpoint every $EVERY, $THREADS threads, $ROUNDS interruptions; in $WORK"
mkdir -p "$WORK/reference" "$WORK/soak"
cd "$WORK/reference"
start=$(date +%s%N)
"${train[@]}" >/dev/null 2>train.log
duration_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "uninterrupted run: $duration_ms ms"

cd "$WORK/soak"
signals=(KILL TERM INT HUP)
declare -A sent=()
round=0 restarts=0
while :; do
    resume=()
    [[ -f $ck ]] && resume=(--resume "$ck")
    "${train[@]}" "${resume[@]}" >/dev/null 2>>train.log &
    pid=$!
    if (( round < ROUNDS )); then
        # A moment in the first 1.1 lengths of an uninterrupted run.
        sleep "$(awk -v d="$duration_ms" -v r="$RANDOM" 'BEGIN { printf "%.3f", d * 1.1 * r / 32768 / 1000 }')"
        sig=${signals[RANDOM % ${#signals[@]}]}
        if kill -s "$sig" "$pid" 2>/dev/null; then
            sent[$sig]=$(( ${sent[$sig]:-0} + 1 ))
            round=$((round + 1))
        fi
    fi
    rc=0
    wait "$pid" || rc=$?
    case $rc in
        0) ;;
        137 | 143 | 130 | 129) continue ;; # interrupted as asked: resume
        *) echo "soak: FAIL — a run exited $rc; see $WORK/soak/train.log"; exit 1 ;;
    esac
    (( round >= ROUNDS )) && break
    # It finished before the interruption came: start again from scratch.
    rm -rf runs w.safetensors
    restarts=$((restarts + 1))
done
summary=$(for s in "${!sent[@]}"; do printf ' %s %s' "$s" "${sent[$s]}"; done)
if cmp -s "$WORK/reference/w.safetensors" "$WORK/soak/w.safetensors"; then
    echo "soak: PASS — $ROUNDS interruptions (${summary# }), $restarts runs finished first and were redone;" \
        "the final weights are identical to the uninterrupted run's"
    rm -rf "$WORK"
else
    echo "soak: FAIL — the final weights differ from the uninterrupted run's (kept in $WORK)"
    exit 1
fi
