#!/usr/bin/env bash
# bench/distributed_scaling.sh — LM training throughput: one process with 1 and 2 OpenMP
# threads against `mpirun -np 2` data parallelism with 1 thread per rank (docs/distributed.md).
#
#   bench/distributed_scaling.sh [BUILD_DIR (build-mpi)] [PRESET (small)] [REPEATS (3)]
#
# Needs the MPI build (-DINSPIRE_MPI=ON). Each run is `finetune-lm` from scratch on the first
# DOCS (600) labeled INSPIRE records for STEPS (40) steps of the preset's global batch; the
# throughput is the training loop's own tokens/s (rank 0's progress line: global tokens, the
# loop only — no start-up, tokenization or validation). Configurations are interleaved, and the
# median of REPEATS is printed; the machine's load average is shown (other jobs skew timings).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-mpi}
PRESET=${2:-small}
REPEATS=${3:-3}
STEPS=${STEPS:-40}
DOCS=${DOCS:-600}
BIN="$BUILD/inspire-classifier"
DATA=${DATA:-../shared/data/labeled/inspire_labeled.jsonl}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
head -n "$DOCS" "$DATA" > "$TMP/data.jsonl"
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to none"

run_one() {  # config -> tokens/s of the training loop
  local cfg=$1 out="$TMP/out"
  rm -rf "$out"
  local cmd="$BIN finetune-lm --preset $PRESET --frozen-epochs 0 --epochs 1 -d $TMP/data.jsonl -o $out --max-steps $STEPS"
  case $cfg in
    1x1) $cmd --threads 1 ;;
    1x2) $cmd --threads 2 ;;
    2x1) $MPIRUN -np 2 $cmd --threads 1 ;;
  esac 2>&1 >/dev/null | tr '\r' '\n' | grep -o '[0-9]* tok/s' | tail -1 | cut -d' ' -f1
}

echo "preset $PRESET, $STEPS steps, $DOCS records, $REPEATS repeats; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A res
for ((r = 0; r < REPEATS; ++r)); do
  for cfg in 1x1 1x2 2x1; do res[$cfg]+="$(run_one $cfg) "; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-30s %10s %9s   %s\n" "configuration" "tokens/s" "speed-up" "(every run)"
base=""
for cfg in 1x1 1x2 2x1; do
  med=$(printf "%s\n" ${res[$cfg]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  [ -z "$base" ] && base=$med
  case $cfg in
    1x1) name="1 process, 1 thread" ;;
    1x2) name="1 process, 2 threads" ;;
    2x1) name="mpirun -np 2, 1 thread each" ;;
  esac
  printf "%-30s %10d %8.2fx   (%s)\n" "$name" "$med" "$(awk "BEGIN { print $med / $base }")" "${res[$cfg]% }"
done
