#!/usr/bin/env bash
# tools/device-lm.sh DIR — on a GPU machine: the medium language models of issue #22
# (docs/cross-validation.md), trained with `--device cuda`: pretraining on all the general English
# at hand (NLTK, WikiText-2, IMDb train + unsup: 77,373 documents, 27.5 M tokens), then
# fine-tuning on the HEP abstracts (1 frozen + 8 epochs at 4e-3); DIR is fwd or bwd (--backwards).
# The flags are those of tools/cv-recipe.sh with PRE_DATA=all and the medium sizes.
#
# What the GPU machine is sent (its working tree travels with at most 64 MiB) is prepared here,
# by tools/device-prep.sh (the same .devbin/ and .data/ as tools/device-cv.sh's):
#   .devbin/  inspire-classifier built with -DINSPIRE_CUDA=ON -DINSPIRE_DEFAULT_MODEL=NONE
#             (stripped) and the .so files it needs that the machine may lack
#   .data/    the corpora recompressed with xz -9 (35 MB): nltk_english.train.txt.xz,
#             wiki.{valid,test}.tokens.xz, imdb_{train,unsup}.jsonl.xz (IMDb's test reviews are
#             never read anyway), hep_abstracts_unlabeled.jsonl.xz
# The model comes back in 15 MB parts under $OUT (lm-DIR.part.*; `cat` them) with its sha256,
# the logs and curves. About 4.7 minutes on an H200 per direction (2026-12-04).
set -euo pipefail
DIR=${1:?fwd or bwd}
OUT=${OUT:?the folder whose files come back}
case $DIR in
  fwd | bwd) ;;
  *) echo "device-lm.sh: DIR must be fwd or bwd, not '$DIR'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
B=.devbin
export LD_LIBRARY_PATH=$PWD/$B:$(dirname "$(find / -xdev -name 'libcublas.so.13' 2>/dev/null | head -1)")
D=/tmp/d
if [ ! -d $D ]; then
  mkdir -p $D
  for f in .data/*.xz; do xz -dc "$f" > "$D/$(basename "${f%.xz}")"; done
fi
back=()
[ "$DIR" = bwd ] && back=(--backwards)
C=(--preset small --threads 16 --device cuda --checkpoint-every 20m --emb-sz 200 --n-hid 576 "${back[@]}")
F=': [0-9]+/[0-9]+ \('  # per-batch progress lines are left out of the logs
$B/inspire-classifier pretrain "${C[@]}" --epochs 1 --valid-pct 0.01 --max-vocab 30000 \
  -d $D/nltk_english.train.txt $D/wiki.valid.tokens $D/wiki.test.tokens $D/imdb_train.jsonl $D/imdb_unsup.jsonl \
  -o /tmp/pre-$DIR 2>&1 | tr '\r' '\n' | grep -vE "$F" | tee "$OUT/pre.log"
$B/inspire-classifier finetune-lm "${C[@]}" --pretrained /tmp/pre-$DIR/lm.safetensors --frozen-epochs 1 \
  --epochs 8 --lr 4e-3 --max-vocab 30000 -d $D/hep_abstracts_unlabeled.jsonl \
  -o /tmp/lm-$DIR 2>&1 | tr '\r' '\n' | grep -vE "$F" | tee "$OUT/lm.log"
cd /tmp/lm-$DIR
split -b 15M lm.safetensors "$OUT/lm-$DIR.part."
sha256sum lm.safetensors > "$OUT/lm-$DIR.sha256"
cp curves.csv "$OUT/lm-curves.csv"
