#!/usr/bin/env bash
# tools/device-check.sh — the ONE prepared check of the CUDA backend on a GPU machine (issue #16).
#
#   1. configures and builds the CUDA build (only what the check needs: test_cuda_ops,
#      test_backend_ops, cuda_bench) for this GPU's architecture;
#   2. runs the `cuda` tests (ctest -L cuda: every op against the CPU backend) and the backend
#      tests (test_backend_ops: the CPU reference, every available backend against it); where
#      mpirun and NCCL are installed, the NCCL communicator's test (mpirun -np 1 test_nccl_comm);
#   3. benchmarks ours (bench/cuda_bench.cpp, fp32 and tf32) against PyTorch + cuDNN
#      (tools/reference/bench_awd_lstm_torch.py, fp32 / tf32 / bf16; skipped with a note when
#      torch is missing): LM training tokens/s at batch 64 x BPTT 70, full size (60000 / 400 /
#      1152 / 3); single 250-token document latency; batch documents/s;
#   4. prints one table (and keeps the raw JSON lines in $BUILD/device-check.jsonl).
#
# Whole run: under 8 minutes (every step's timeout is cut to what is left of DEVICE_CHECK_BUDGET).
# Environment: PREBUILT (a folder holding test_cuda_ops, test_backend_ops and cuda_bench built
# elsewhere, e.g. on a machine with the build dependencies that the GPU machine lacks: step 1 is
# skipped, the tests run as programs rather than through ctest, and any .so files in that folder
# are found first), BUILD (build folder, default build-device), CUDA_ARCH (default: the GPU's compute
# capability), NVCC, PYTHON (default python3), BENCH_SECONDS (per measurement, default 4),
# DEVICE_CHECK_BUDGET (seconds for the whole script, default 470: every timeout is cut to fit).
# Exit status: 0 all passed, 1 a step failed (named on stderr), 2 not a GPU machine.
# First run on a GPU (an H200) on 2026-12-04, in PREBUILT mode: results in cuda/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
say() { echo "device-check: $*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}
step() { say "[$((SECONDS - start)) s] $*"; }
BUDGET=${DEVICE_CHECK_BUDGET:-470}  # seconds for the whole script (the issue: 8 minutes)
# tmo CAP: a step's timeout, CAP seconds at most and never past the budget (at least 5).
tmo() {
  local cap=$1 left=$((BUDGET - (SECONDS - start)))
  [ "$left" -lt "$cap" ] && cap=$left
  [ "$cap" -lt 5 ] && cap=5
  echo "$cap"
}

BUILD=${BUILD:-build-device}
PYTHON=${PYTHON:-python3}
SECS=${BENCH_SECONDS:-4}
JOBS=$(nproc 2>/dev/null || echo 4)

# ---- 0. a GPU, a driver, nvcc ----------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  say "no NVIDIA GPU or driver here (nvidia-smi missing or failing): nothing to check"
  exit 2
fi
nvidia-smi -L >&2
if [ -n "${PREBUILT:-}" ]; then
  # Built elsewhere: run those programs; their libraries from PREBUILT, then CUDA's own folders.
  BUILD=$(cd "$PREBUILT" && pwd)
  libdirs=$BUILD
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
    $(find / -xdev -name 'libcublas.so.1[0-9]*' -printf '%h\n' 2>/dev/null | sort -u); do
    [ -d "$d" ] && libdirs=$libdirs:$d
  done
  export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  for b in test_cuda_ops test_backend_ops cuda_bench; do
    [ -x "$BUILD/$b" ] || fail "PREBUILT=$PREBUILT has no program $b"
    ldd "$BUILD/$b" | grep -q "not found" && { ldd "$BUILD/$b" >&2; fail "$b: libraries not found"; }
  done
  step "prebuilt programs from $BUILD (libraries: $LD_LIBRARY_PATH)"
else
NVCC=${NVCC:-$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || fail "nvcc not found (install the CUDA toolkit or set NVCC=/path/to/nvcc)"
ARCH=${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')}
[[ "$ARCH" =~ ^[0-9]+$ ]] || fail "could not read the GPU's compute capability (got '$ARCH'); set CUDA_ARCH"
command -v cmake >/dev/null 2>&1 || fail "cmake not found (tools/install-deps.sh installs the build dependencies)"

# ---- 1. build ----------------------------------------------------------------------------------
step "configuring $BUILD for sm_$ARCH with $NVCC"
timeout "$(tmo 90)" cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DINSPIRE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_COMPILER="$NVCC" -DINSPIRE_BENCH=OFF \
  >"${TMPDIR:-/tmp}/device-check-configure.log" 2>&1 || { tail -n 30 "${TMPDIR:-/tmp}/device-check-configure.log" >&2; fail "cmake configure (missing build dependencies? run tools/install-deps.sh)"; }
step "building test_cuda_ops test_backend_ops cuda_bench (-j$JOBS)"
timeout "$(tmo 240)" cmake --build "$BUILD" -j"$JOBS" --target test_cuda_ops test_backend_ops cuda_bench \
  >"$BUILD/build.log" 2>&1 || { grep -E "error|Error" -A3 "$BUILD/build.log" | head -n 40 >&2; fail "build (log: $BUILD/build.log)"; }
fi

# ---- 2. tests ----------------------------------------------------------------------------------
tests_ok=1
if [ -n "${PREBUILT:-}" ]; then
  step "test_cuda_ops"
  timeout "$(tmo 90)" "$BUILD/test_cuda_ops" --gtest_brief=1 >"$BUILD/ctest-cuda.log" 2>&1 || tests_ok=0
  grep -E "PASSED|FAILED|SKIPPED|Failure" -A4 "$BUILD/ctest-cuda.log" | head -n 80 >&2 || true
  if grep -q "SKIPPED" "$BUILD/ctest-cuda.log"; then
    say "some cuda tests SKIPPED on a GPU machine: the program does not see the device"; tests_ok=0
  fi
else
step "ctest -L cuda"
timeout "$(tmo 60)" ctest --test-dir "$BUILD" -L cuda --output-on-failure -j4 >"$BUILD/ctest-cuda.log" 2>&1 || tests_ok=0
grep -E "tests passed|tests failed|Skipped|Failed|\*\*\*" "$BUILD/ctest-cuda.log" >&2 || true
if grep -q "(Skipped)" "$BUILD/ctest-cuda.log"; then
  say "some cuda tests SKIPPED on a GPU machine: the build does not see the device"; tests_ok=0
fi
fi
step "test_backend_ops (CPU reference + every available backend)"
timeout "$(tmo 30)" "$BUILD/test_backend_ops" --gtest_brief=1 >"$BUILD/test_backend_ops.log" 2>&1 || { tail -n 30 "$BUILD/test_backend_ops.log" >&2; tests_ok=0; }

# ---- 2b. NCCL (issue #17): the NCCL communicator, one GPU, one rank, bootstrapped through MPI --
if [ -z "${PREBUILT:-}" ] && command -v mpirun >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libnccl\.so'; then
  step "NCCL: reconfiguring $BUILD with -DINSPIRE_MPI=ON, building test_nccl_comm"
  if timeout "$(tmo 90)" cmake -S . -B "$BUILD" -DINSPIRE_MPI=ON >"$BUILD/configure-mpi.log" 2>&1 &&
    grep -q "NCCL communicator" "$BUILD/configure-mpi.log" &&
    timeout "$(tmo 150)" cmake --build "$BUILD" -j"$JOBS" --target test_nccl_comm >>"$BUILD/build.log" 2>&1; then
    step "NCCL: mpirun -np 1 test_nccl_comm"
    timeout "$(tmo 60)" mpirun --allow-run-as-root -np 1 "$BUILD/test_nccl_comm" --gtest_brief=1 \
      >"$BUILD/test_nccl_comm.log" 2>&1 || { tail -n 30 "$BUILD/test_nccl_comm.log" >&2; say "NCCL test FAILED"; tests_ok=0; }
  else
    tail -n 20 "$BUILD/configure-mpi.log" "$BUILD/build.log" >&2 || true
    say "NCCL build FAILED (or CMake did not find NCCL: see $BUILD/configure-mpi.log)"; tests_ok=0
  fi
else
  say "NCCL step skipped: needs mpirun (openmpi-bin, libopenmpi-dev) and NCCL (libnccl2, libnccl-dev) here"
fi

# ---- 3. benchmarks -----------------------------------------------------------------------------
OUT="$BUILD/device-check.jsonl"
: >"$OUT"
for prec in fp32 tf32; do
  step "benchmark: ours ($prec, ${SECS} s per measurement)"
  timeout "$(tmo 60)" "$BUILD/cuda_bench" --precision "$prec" --seconds "$SECS" >>"$OUT" 2>"$BUILD/cuda_bench.err" ||
    { cat "$BUILD/cuda_bench.err" >&2; say "our $prec benchmark FAILED or timed out (rows missing below)"; tests_ok=0; }
done
torch_note=""
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  torch_note="PyTorch rows skipped: '$PYTHON' has no torch with CUDA (pip install torch)"
  say "$torch_note"
else
  step "benchmark: PyTorch + cuDNN (fp32, tf32, bf16)"
  timeout "$(tmo 120)" "$PYTHON" tools/reference/bench_awd_lstm_torch.py --seconds "$SECS" >>"$OUT" 2>"$BUILD/torch_bench.err" ||
    { tail -n 20 "$BUILD/torch_bench.err" >&2; torch_note="PyTorch benchmark failed or timed out (see $BUILD/torch_bench.err)"; say "$torch_note"; }
fi

# ---- 4. one table ------------------------------------------------------------------------------
step "results"
"$PYTHON" - "$OUT" "$torch_note" <<'PY' || cat "$OUT"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
def get(impl, bench, prec, key):
    for r in rows:
        if r["impl"] == impl and r["bench"] == bench and r["precision"] == prec:
            return r[key]
    return None
fmt = lambda v, f: "n/a" if v is None else f.format(v)
print(f"{'measurement':44} {'impl':8} {'fp32':>12} {'tf32':>12} {'bf16':>12}")
for bench, key, unit, f in [("lm", "tokens_per_s", "LM train tokens/s (bs 64, bptt 70)", "{:,.0f}"),
                            ("latency", "ms", "1 doc x 250 tokens, ms", "{:.2f}"),
                            ("batch", "docs_per_s", "batch 256 x 250 tokens, docs/s", "{:,.0f}")]:
    for impl in ("ours", "pytorch"):
        print(f"{unit:44} {impl:8} " + " ".join(f"{fmt(get(impl, bench, p, key), f):>12}" for p in ("fp32", "tf32", "bf16")))
gpu = next((r.get("gpu") for r in rows if r.get("gpu")), None)
if gpu: print(f"GPU: {gpu}")
print("ours: fp32 and tf32 (no bf16 mode yet); targets: LM >= PyTorch, latency <= 5 ms, batch >= 2000 docs/s")
if sys.argv[2]: print("note:", sys.argv[2])
PY
step "done in $((SECONDS - start)) s"
[ "$tests_ok" = 1 ] || fail "tests or our benchmark failed (logs in $BUILD/)"
