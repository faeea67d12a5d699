#!/usr/bin/env bash
# tools/device-cv.sh DIR — on a GPU machine: one direction (DIR = fwd or bwd) of issue #22's
# recipe at SIZE (medium: 200/576, 30,000 words; large: 400/1152, 30,000 words; original:
# 400/1152, 60,000 words), all of it on the GPU, and its 5-fold cross-validation
# (docs/cross-validation.md). One classifier in half precision is 21 MiB (medium) or 62 MiB
# (large; original: about 63, its vocabulary capped near 31,700 words by --min-freq 2 on the HEP
# abstracts), so `large` is the biggest sure to ship within the default model's cap of about
# 64 MB (alone; medium fits as a forward + backward pair):
#   1. pretrain on all the general English at hand, fine-tune on the HEP abstracts (the flags of
#      tools/device-lm.sh; skipped when $WORK has the LM);
#   2. `cv --device cuda` over the labeled train + valid papers with the medium classifier recipe
#      (10 last-stage epochs, drop-mult 0.3; the flags of /work/runs-22/run-cv-gpu.sh);
#   (between 1 and 2, with PROBE=1, the default: the LM's document vectors of the labeled papers
#   (`embed`) + logistic regression on the same folds, tools/reference/cv_features.py --only
#   vec-lr: a 1-minute screen of the LM whose figure comes back even if the CV does not finish)
# The language model never leaves the machine (it is too large to come back); what comes back
# is ONE file, $OUT/report-$SIZE-$DIR.tgz (the machine returns at most 8 files): the logs, the
# LM's curves, probe.json, cv.json (the summary) and every fold's scores.json, probs.json and
# curves (fold-K-*; for the fwd + bwd ensemble and the hybrid with TF-IDF + LR here).
# Unpack with `tar -xzf report-SIZE-DIR.tgz -C DEST`.
# Both steps checkpoint every 2 minutes into $WORK (default /tmp/ic-cv): a call cut by its time
# limit is continued by the same command while the machine is still warm; finished folds are
# packed into the report as they come. TF32=1 adds --tf32.
# TESTS=1 first runs .devbin/test_cuda_train (the GPU training tests; exit 1 if one fails);
# CV_EXTRA: more flags for `cv` alone (e.g. "--fold-lm-epochs 1": ULMFiT's LM step on each fold's
# training texts), into $WORK/$SIZE-$DIR/${CV_DIR:-cv} (give another CV_DIR for another cv run).
# LM_EPOCHS: unfrozen HEP fine-tuning epochs (default 8; on the medium LM 6 more epochs at 2e-3
# took the probe from 0.725 to 0.739, docs/cross-validation.md). Another value needs another
# WORK (the LM step is skipped when $WORK has an LM).
# FOLDS_AT_ONCE: how many folds train side by side, as `cv --fold K` processes (default 5 on the
# GPU, 1 elsewhere; below).
# STOP_AFTER=lm stops once the LM is trained (so that one call can hold the tests and the LM,
# the next the cross-validation: a call may run 10 minutes).
# A smoke run on a machine without a GPU: IC=build/inspire-classifier DEVICE=cpu SIZE=tiny
# EXTRA="--max-steps 2" OUT=/tmp/o PYTHON=<a python with scikit-learn> tools/device-cv.sh fwd
# (what comes back is whatever exists,
# also when a step fails or the time limit cuts it).
#
# Sent with the working tree (at most 64 MiB): .devbin/ (inspire-classifier built with
# -DINSPIRE_CUDA=ON -DINSPIRE_DEFAULT_MODEL=NONE, stripped, and the .so files the machine may
# lack) and .data/ (the corpora of tools/device-lm.sh plus inspire_labeled.jsonl.xz).
set -euo pipefail
DIR=${1:?fwd or bwd}
OUT=${OUT:?the folder whose files come back}
SIZE=${SIZE:-medium}
WORK=${WORK:-/tmp/ic-cv}
case $DIR in
  fwd | bwd) ;;
  *) echo "device-cv.sh: DIR must be fwd or bwd, not '$DIR'" >&2; exit 2 ;;
esac
case ${STOP_AFTER:-} in
  '' | lm) ;;
  *) echo "device-cv.sh: STOP_AFTER must be lm or unset, not '$STOP_AFTER'" >&2; exit 2 ;;
esac
case ${FOLDS_AT_ONCE:-1} in
  [1-5]) ;;
  *) echo "device-cv.sh: FOLDS_AT_ONCE must be 1 to 5, not '$FOLDS_AT_ONCE'" >&2; exit 2 ;;
esac
case $SIZE in
  medium) S=(--emb-sz 200 --n-hid 576); V=30000 ;;
  original) S=(--emb-sz 400 --n-hid 1152); V=60000 ;;
  large) S=(--emb-sz 400 --n-hid 1152); V=30000 ;;  # the original's sizes, a shippable vocabulary
  tiny) S=(--emb-sz 16 --n-hid 32); V=500 ;;
  *) echo "device-cv.sh: SIZE must be medium, large, original or tiny, not '$SIZE'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
IC=${IC:-.devbin/inspire-classifier}
export LD_LIBRARY_PATH=$PWD/.devbin:$(dirname "$(find / -xdev -name 'libcublas.so.1[0-9]*' 2>/dev/null | head -1)")
D=$WORK/data
if [ ! -f $D/.done ]; then
  mkdir -p $D
  for f in .data/*.xz; do xz -dc "$f" > "$D/$(basename "${f%.xz}")"; done
  touch $D/.done
fi
back=()
[ "$DIR" = bwd ] && back=(--backwards)
tf=()
[ "${TF32:-0}" = 1 ] && tf=(--tf32)
# shellcheck disable=SC2206  # EXTRA is a list of flags
C=(--preset small --device "${DEVICE:-cuda}" "${tf[@]}" --checkpoint-every 2m "${S[@]}" ${EXTRA:-})
F=': [0-9]+/[0-9]+ \('  # per-batch progress lines are left out of the logs
W=$WORK/$SIZE-$DIR
CV=$W/${CV_DIR:-cv}
R=$W/report-${CV_DIR:-cv}  # what comes back, packed by collect()
mkdir -p $W $R
resume() { [ -f "$1/checkpoint.json" ] && echo --resume || true; }
collect() {  # whatever exists, on every exit
  [ -f $W/lm/curves.csv ] && cp $W/lm/curves.csv "$R/lm-curves.csv"
  for f in $CV/fold-*; do
    [ -d "$f" ] || continue
    k=$(basename "$f")
    [ -f "$f/scores.json" ] && cp "$f/scores.json" "$R/$k-scores.json"
    [ -f "$f/member-0/probs.json" ] && cp "$f/member-0/probs.json" "$R/$k-probs.json"
    [ -f "$f/member-0/curves.csv" ] && cp "$f/member-0/curves.csv" "$R/$k-curves.csv"
  done
  # one file, renamed into place: a call cut while packing still returns the last whole report
  tar -czf "$W/report.tgz" -C "$R" . && cp "$W/report.tgz" "$OUT/report.tmp" &&
    mv "$OUT/report.tmp" "$OUT/report-$SIZE-$DIR.tgz"
  return 0
}
trap collect EXIT
SECONDS=0
if [ "${TESTS:-0}" = 1 ]; then
  mkdir -p build-dev  # where the tests look for the command
  [ "$IC" -ef build-dev/inspire-classifier ] || cp "$IC" build-dev/inspire-classifier
  timeout 300 .devbin/test_cuda_train --gtest_brief=1 2>&1 | tee "$R/test_cuda_train.log" | tail -n 30 || true
  grep -q "PASSED" "$R/test_cuda_train.log" && ! grep -q "FAILED" "$R/test_cuda_train.log" ||
    { echo "device-cv.sh: test_cuda_train failed" >&2; exit 1; }
  echo "tested after ${SECONDS}s" >> "$R/times.log"
fi
if [ ! -f $W/pre/lm.safetensors ]; then
  # shellcheck disable=SC2046  # resume prints one flag or nothing
  $IC pretrain "${C[@]}" --threads "$(nproc)" "${back[@]}" --epochs 1 --valid-pct 0.01 --max-vocab $V \
    -d $D/nltk_english.train.txt $D/wiki.valid.tokens $D/wiki.test.tokens $D/imdb_train.jsonl $D/imdb_unsup.jsonl \
    -o $W/pre $(resume $W/pre) 2>&1 | tr '\r' '\n' | grep -vE "$F" >> "$R/pre.log"
fi
echo "pretrained after ${SECONDS}s" >> "$R/times.log"
if [ ! -f $W/lm/lm.safetensors ]; then
  # shellcheck disable=SC2046
  $IC finetune-lm "${C[@]}" --threads "$(nproc)" "${back[@]}" --pretrained $W/pre/lm.safetensors --frozen-epochs 1 \
    --epochs "${LM_EPOCHS:-8}" --lr 4e-3 --max-vocab $V -d $D/hep_abstracts_unlabeled.jsonl \
    -o $W/lm $(resume $W/lm) 2>&1 | tr '\r' '\n' | grep -vE "$F" >> "$R/lm.log"
fi
echo "fine-tuned after ${SECONDS}s" >> "$R/times.log"
sha256sum $W/lm/lm.safetensors > "$R/lm.sha256"
if [ "${PROBE:-1}" = 1 ] && [ ! -f "$R/probe.json" ]; then
  $IC embed -q --threads "$(nproc)" -m $W/lm/lm.safetensors -i $D/inspire_labeled.jsonl -o $W/vectors.jsonl &&
    ${PYTHON:-python3} tools/reference/cv_features.py $W/vectors.jsonl --data $D/inspire_labeled.jsonl \
      --only vec-lr --json "$R/probe.json" > "$R/probe.log" 2>&1 ||
    echo "device-cv.sh: the probe failed (probe.log)" >&2
  echo "probed after ${SECONDS}s" >> "$R/times.log"
fi
[ "${STOP_AFTER:-}" = lm ] && exit 0
# shellcheck disable=SC2206  # CV_EXTRA is a list of flags
# --no-watch: the folds are not scored after every epoch (that scoring runs on the CPU and could
# take longer than the training on the GPU); each is scored after its last epoch, as always
cv=($IC cv "${C[@]}" --no-watch --epochs 10 --drop-mult 0.3 ${CV_EXTRA:-} -d $D/inspire_labeled.jsonl
  --lm $W/lm/lm.safetensors -o $CV)
cv_resume() {  # --resume when a fold stopped in its classifier or in its LM step (--fold-lm-epochs)
  if compgen -G "$CV/fold-*/member-*/checkpoint.json" > /dev/null ||
    compgen -G "$CV/fold-*/member-*/lm/checkpoint.json" > /dev/null; then echo --resume; fi
}
# Every finished fold is copied out within 15 s, so that a call cut hard (the session's device
# time ending) still brings back the folds done so far.
watch() {  # watch PID...: collect every 15 s until all have ended; status 1 if one failed
  local p alive=1 rc=0
  while [ $alive = 1 ]; do
    sleep 15
    collect
    alive=0
    for p in "$@"; do kill -0 "$p" 2> /dev/null && alive=1; done
  done
  for p in "$@"; do wait "$p" || rc=1; done
  return $rc
}
# FOLDS_AT_ONCE folds train side by side as `cv --fold K` processes (default 5 on the GPU: one
# process leaves it idle while the CPU scores each epoch's validation, among other gaps; 1
# elsewhere), each with nproc / FOLDS_AT_ONCE threads, logging to cv-fold-K.log. Then one `cv`
# reads every scored fold back, trains any fold still unscored (one whose process failed), and
# writes the table and cv.json; its failure is the script's.
at_once=${FOLDS_AT_ONCE:-$([ "${DEVICE:-cuda}" = cuda ] && echo 5 || echo 1)}
if [ "$at_once" -gt 1 ]; then
  th=$(( $(nproc) / at_once )); [ $th -ge 1 ] || th=1
  pids=()
  for k in 0 1 2 3 4; do
    # shellcheck disable=SC2046  # cv_resume prints one flag or nothing
    "${cv[@]}" $(cv_resume) --threads $th --fold $k > /dev/null 2> >(tr '\r' '\n' | grep -vE "$F" >> "$R/cv-fold-$k.log") &
    pids+=($!)
    if [ ${#pids[@]} -ge "$at_once" ] || [ $k = 4 ]; then
      watch "${pids[@]}" || echo "device-cv.sh: a fold's cv failed (cv-fold-K.log); the last cv retries it" >&2
      pids=()
    fi
  done
fi
# shellcheck disable=SC2046
"${cv[@]}" $(cv_resume) --threads "$(nproc)" > "$R/cv.json" 2> >(tr '\r' '\n' | grep -vE "$F" >> "$R/cv.log") &
watch $!
echo "cross-validated after ${SECONDS}s" >> "$R/times.log"
