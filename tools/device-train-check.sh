#!/usr/bin/env bash
# tools/device-train-check.sh — training on the CUDA backend, on a GPU machine:
#   1. tests/test_cuda_train.cpp (an LM step, its gradients and Adam against the CPU; training
#      with dropout; device save/load; `pretrain --device cuda` with a checkpoint and --resume;
#      classifier steps through the freezing stages against the CPU; `train-classifier --device
#      cuda` with --resume and CPU serving of its bundle),
#      then its in-process tests again under compute-sanitizer memcheck where that exists;
#   2. LM training speed: `pretrain --device cuda` for STEPS batches on CORPUS at the medium
#      (200/576) and the original (400/1152) sizes, float32 and --tf32; the tokens/s of the last
#      progress line of each (the same command and sizes as the CPU figures of
#      docs/cross-validation.md).
# PREBUILT: a folder with test_cuda_train and inspire-classifier built with -DINSPIRE_CUDA=ON
# (and any .so they need that the machine lacks). The tests find the command at
# build-dev/inspire-classifier (INSPIRE_BINARY_DIR of that build): it is copied there.
# CORPUS: plain text for the speed runs. STEPS (default 150). Exit 1 if a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PREBUILT=${PREBUILT:?set PREBUILT to the folder of the CUDA build\'s programs}
CORPUS=${CORPUS:-$PREBUILT/corpus.txt}
STEPS=${STEPS:-150}
say() { echo "device-train-check: $*" >&2; }
libdirs=$(cd "$PREBUILT" && pwd)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
  $(find / -xdev -name 'libcublas.so.1[0-9]*' -printf '%h\n' 2>/dev/null | sort -u); do
  [ -d "$d" ] && libdirs=$libdirs:$d
done
export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p build-dev && cp "$PREBUILT/inspire-classifier" build-dev/
ok=1
say "test_cuda_train"
timeout 240 "$PREBUILT/test_cuda_train" --gtest_brief=0 2>&1 | grep -vE "^\[ RUN|^\[----------\] [0-9]+ tests? from" || ok=0
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$CS" ]; then
  say "memcheck (in-process tests)"
  timeout 180 "$CS" --tool memcheck --print-limit 10 "$PREBUILT/test_cuda_train" \
    --gtest_filter='*WithoutDropout*:*WithDropout*:*ClassifierSteps*' 2>&1 | tail -n 4
fi
say "LM training speed, $STEPS batches on $CORPUS"
printf '%-34s %-6s %12s\n' "sizes" "mode" "tokens/s"
for sizes in "--emb-sz 200 --n-hid 576 --max-vocab 30000" "--emb-sz 400 --n-hid 1152 --max-vocab 60000"; do
  for mode in fp32 tf32; do
    flag=""
    [ "$mode" = tf32 ] && flag=--tf32
    out=$(mktemp -d)
    # shellcheck disable=SC2086  # sizes is a list of flags
    line=$(timeout 120 build-dev/inspire-classifier pretrain --preset small $sizes --device cuda $flag \
      -d "$CORPUS" --valid-pct 0.05 --epochs 4 --max-steps "$STEPS" -o "$out" 2>&1 | tr '\r' '\n' |
      grep -E "tok/s|error" | grep -v "^tokenizing" | tail -n 1)
    printf '%-34s %-6s %12s   (%s)\n' "${sizes%% --max-vocab*}" "$mode" \
      "$(echo "$line" | grep -oE '[0-9]+ tok/s' | cut -d' ' -f1)" "$line"
    rm -rf "$out"
  done
done
[ "$ok" = 1 ] || { say "FAILED: test_cuda_train"; exit 1; }
say "done"
