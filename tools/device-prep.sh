#!/usr/bin/env bash
# tools/device-prep.sh [--smoke] — prepares here, on the CPU machine, what tools/device-cv.sh needs
# on a lent GPU machine (docs/cross-validation.md, the runbook), so that a session that is lent
# one spends none of its device time on preparation:
#   .devbin/  inspire-classifier and test_cuda_train built with CUDA for the H200 (sm_90; another
#             with CUDA_ARCH) and without the embedded model, stripped, beside the .so files of
#             the CUDA runtime and OpenMP that the GPU machine may lack (built in build-dev/: the
#             GPU tests look for the command in the build folder they were built in, and
#             device-cv.sh copies it to build-dev/ on the GPU machine);
#   .data/    the corpora, xz -9: the general English that `pretrain` reads, the unlabeled HEP
#             abstracts and the labeled papers;
# both named in .git/info/exclude, so that git ignores them and the device tool's `carry` sends
# them. The programs are rebuilt (incrementally) on every run, so that .devbin/ is never older
# than the sources; .data/ is made once (delete it to redo it).
# --smoke: then runs device-cv.sh with those very programs and files on this machine's CPU, at a
# tiny size and 2 steps per stage (DEVICE=cpu SIZE=tiny), the GPU tests included (they skip
# without a GPU) and the folds side by side as on the GPU: a run of about two minutes that fails
# here rather than on the GPU machine.
# PYTHON: a python with scikit-learn for the smoke run's probe (default python3).
# It ends by printing what would travel (at most 64 MiB with the working tree) and the commands.
set -euo pipefail
usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
SMOKE=0
case ${1:-} in
  '') ;;
  --smoke) SMOKE=1 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "device-prep.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-../shared/data}
GE=$DATA_DIR/general_english

# git ignores both folders (here only: .git/info/exclude is not committed)
mkdir -p .git/info
for p in .devbin .data; do
  grep -qx "/$p/" .git/info/exclude 2> /dev/null || echo "/$p/" >> .git/info/exclude
done

command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
  { echo "device-prep.sh: nvcc not found (neither on PATH nor /usr/local/cuda/bin)" >&2; exit 1; }
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
echo "== building the CUDA programs in build-dev/ (sm_${CUDA_ARCH:-90}; nvcc is slow)" >&2
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DINSPIRE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DINSPIRE_BENCH=OFF -DINSPIRE_DEFAULT_MODEL=NONE > /dev/null
cmake --build build-dev -j"$(nproc)" --target inspire-classifier test_cuda_train
rm -rf .devbin.tmp && mkdir .devbin.tmp
for p in inspire-classifier test_cuda_train; do strip -o ".devbin.tmp/$p" "build-dev/$p"; done
# the runtime libraries the GPU machine may lack; cuBLAS is large and found there
# (device-cv.sh puts the directory of its libcublas on LD_LIBRARY_PATH)
for lib in libgomp.so.1 libcudart.so.13; do
  path=$(ldd build-dev/inspire-classifier | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$path" ] || { echo "device-prep.sh: build-dev/inspire-classifier does not link $lib" >&2; exit 1; }
  cp -L "$path" ".devbin.tmp/$lib"
done
rm -rf .devbin && mv .devbin.tmp .devbin

if [ ! -f .data/.done ]; then
  echo "== compressing the corpora into .data/ (xz -9)" >&2
  rm -rf .data.tmp && mkdir .data.tmp
  # name on the GPU machine (device-cv.sh drops the .xz) <- source here (.gz is read through zcat)
  while read -r name src; do
    case $src in *.gz) zcat "$src" ;; *) cat "$src" ;; esac | xz -9 -T"$(nproc)" > ".data.tmp/$name.xz"
  done << EOF
nltk_english.train.txt $GE/nltk_english.train.txt.gz
wiki.valid.tokens $GE/wikitext-2/wiki.valid.tokens
wiki.test.tokens $GE/wikitext-2/wiki.test.tokens
imdb_train.jsonl $GE/imdb/imdb_train.jsonl.gz
imdb_unsup.jsonl $GE/imdb/imdb_unsup.jsonl.gz
hep_abstracts_unlabeled.jsonl $DATA_DIR/unlabeled/hep_abstracts_unlabeled.jsonl
inspire_labeled.jsonl $DATA_DIR/labeled/inspire_labeled.jsonl
EOF
  touch .data.tmp/.done
  rm -rf .data && mv .data.tmp .data
fi

if [ $SMOKE = 1 ]; then
  s=$(mktemp -d)
  mkdir "$s/out"  # the device tool's $OUT exists
  echo "== smoke run of device-cv.sh on the CPU (tiny size, 2 steps a stage) in $s" >&2
  # 5 folds at once, as on the GPU
  IC=.devbin/inspire-classifier DEVICE=cpu SIZE=tiny EXTRA="--max-steps 2" OUT=$s/out WORK=$s/work \
    TESTS=1 FOLDS_AT_ONCE=5 tools/device-cv.sh fwd < /dev/null
  tar -tzf "$s/out/report-tiny-fwd.tgz" | sort > "$s/contents"
  for f in probe.json cv.json fold-4-scores.json fold-4-probs.json cv-fold-4.log test_cuda_train.log; do
    grep -qx "./$f" "$s/contents" ||
      { echo "device-prep.sh: the smoke run's report lacks $f (see $s)" >&2; exit 1; }
  done
  rm -rf "$s"
  echo "== smoke run: passed" >&2
fi

# what travels: the tracked and the untracked, not ignored, files, plus the carried folders (du
# fails on a tracked file moved aside, and still counts the others)
tree=$({ git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2> /dev/null || true; } |
  tail -n 1 | cut -f1)
carried=$(du -sb .devbin .data | awk '{ s += $1 } END { print s }')
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
echo "travels: $(mib "$tree") MiB of working tree + $(mib "$carried") MiB in .devbin and .data =" \
  "$(mib $((tree + carried))) MiB (at most 64)"
if [ $((tree + carried)) -gt $((64 * 1048576)) ]; then
  echo "over the limit: move models/default.safetensors aside for the device calls" \
    "(mv models/default.safetensors /tmp/), and back after (git status must show no change)"
fi
cat << 'EOF'
then, through the device tool (carry [".devbin", ".data"]; docs/cross-validation.md):
  call 1: TESTS=1 STOP_AFTER=lm SIZE=large TF32=1 tools/device-cv.sh fwd
  call 2: SIZE=large TF32=1 tools/device-cv.sh fwd
EOF
