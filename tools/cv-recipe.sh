#!/bin/bash
# tools/cv-recipe.sh — cross-validate our recipe end to end (issue #22's protocol,
# docs/cross-validation.md): label-free forward and backward LMs, then `inspire-classifier cv`.
#
#   tools/cv-recipe.sh OUT_DIR [--preset small] [--threads N]
#
# 1. pretrain a forward and a backward LM on general English (NLTK, or all of it; no labels);
# 2. fine-tune each on the unlabeled HEP abstracts (no labels; ULMFiT's LM step);
# 3. `cv`: per fold, a classifier on each LM, scored at its last epoch; their ensemble too.
# Every step is skipped when its output exists and resumed from its checkpoint when one exists,
# so a killed run is continued by running the same command again; checkpoints come every
# CKPT_EVERY inside epochs too, so a kill loses at most that much. Environment overrides:
# IC (the binary, default build/inspire-classifier), PRE_EPOCHS (1), LM_EPOCHS (4), LM_LR (4e-3),
# CLAS_EPOCHS (the preset's), DATA_DIR (../shared/data), DIRS ("fwd bwd": the LMs, one cv member each),
# CV_ARGS (more `cv` flags, e.g. "--drop-mult 0.3"), CKPT_EVERY (20m; steps or a duration),
# PRE_DATA (the pretraining corpus: "nltk", the default, 3.7 M words; or "all": NLTK, WikiText-2
# and IMDb, 27 M words), PRE_ARGS (more `pretrain` flags, e.g. "--valid-pct 0.02"), LM_ARGS
# (more `finetune-lm` flags), SIZE_ARGS (model sizes for every step, e.g. "--emb-sz 200 --n-hid 576"),
# STOP_AFTER=lm (stop once the LMs are trained: probe them with `embed` before a long CV).
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
[[ $# -ge 1 && $1 != -h && $1 != --help ]] || { usage; exit 2; }
OUT=$1
shift
PRESET=small
THREADS=$(nproc)
while [[ $# -gt 0 ]]; do
  case $1 in
    --preset) PRESET=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "cv-recipe.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
IC=${IC:-build/inspire-classifier}
DATA_DIR=${DATA_DIR:-../shared/data}
L=$DATA_DIR/labeled/inspire_labeled.jsonl
U=$DATA_DIR/unlabeled/hep_abstracts_unlabeled.jsonl
GE=$DATA_DIR/general_english
case ${PRE_DATA:-nltk} in
  nltk) G=("$GE/nltk_english.train.txt.gz") ;;
  all) G=("$GE/nltk_english.train.txt.gz" "$GE/wikitext-2/wiki.valid.tokens"
          "$GE/wikitext-2/wiki.test.tokens" "$GE/imdb/imdb_train.jsonl.gz"
          "$GE/imdb/imdb_test.jsonl.gz" "$GE/imdb/imdb_unsup.jsonl.gz") ;;
  *) echo "cv-recipe.sh: PRE_DATA must be nltk or all, not '$PRE_DATA'" >&2; exit 2 ;;
esac
case ${STOP_AFTER:-} in
  '' | lm) ;;
  *) echo "cv-recipe.sh: STOP_AFTER must be lm or unset, not '$STOP_AFTER'" >&2; exit 2 ;;
esac
for f in "$IC" "$L" "$U" "${G[@]}"; do
  [[ -e $f ]] || { echo "cv-recipe.sh: missing $f" >&2; exit 1; }
done
mkdir -p "$OUT"

# run_stage DIR MODEL_FILE COMMAND...: skipped when DIR/MODEL_FILE exists; --resume when a
# checkpoint exists.
run_stage() {
  local dir=$1 model=$2
  shift 2
  if [[ -f $dir/$model ]]; then
    echo "== $dir/$model exists: skipped" >&2
    return
  fi
  local resume=()
  [[ -f $dir/checkpoint.json ]] && resume=(--resume)
  echo "== $* -o $dir ${resume[*]}" >&2
  "$@" -o "$dir" "${resume[@]}"
}

# shellcheck disable=SC2206  # SIZE_ARGS is a list of flags
common=(--preset "$PRESET" --threads "$THREADS" --checkpoint-every "${CKPT_EVERY:-20m}" ${SIZE_ARGS:-})
DIRS=${DIRS:-fwd bwd}
for dir in $DIRS; do
  back=()
  [[ $dir == bwd ]] && back=(--backwards)
  # shellcheck disable=SC2086  # PRE_ARGS is a list of flags
  run_stage "$OUT/pre-$dir" lm.safetensors "$IC" pretrain "${common[@]}" "${back[@]}" \
    --epochs "${PRE_EPOCHS:-1}" ${PRE_ARGS:-} -d "${G[@]}"
  # shellcheck disable=SC2086  # LM_ARGS is a list of flags
  run_stage "$OUT/lm-$dir" lm.safetensors "$IC" finetune-lm "${common[@]}" "${back[@]}" \
    --pretrained "$OUT/pre-$dir/lm.safetensors" --frozen-epochs 1 --epochs "${LM_EPOCHS:-4}" \
    --lr "${LM_LR:-4e-3}" ${LM_ARGS:-} -d "$U"
done

if [[ ${STOP_AFTER:-} == lm ]]; then
  echo "== STOP_AFTER=lm: the LMs are trained; cv not run" >&2
  exit 0
fi

clas=()
[[ -n ${CLAS_EPOCHS:-} ]] && clas=(--epochs "$CLAS_EPOCHS")
resume=()
# a fold stopped in its classifier or in its LM step (--fold-lm-epochs)
compgen -G "$OUT/cv/fold-*/member-*/checkpoint.json" >/dev/null ||
  compgen -G "$OUT/cv/fold-*/member-*/lm/checkpoint.json" >/dev/null && resume=(--resume)
echo "== cv" >&2
lms=()
for dir in $DIRS; do lms+=(--lm "$OUT/lm-$dir/lm.safetensors"); done
# shellcheck disable=SC2086  # CV_ARGS is a list of flags
"$IC" cv "${common[@]}" "${clas[@]}" ${CV_ARGS:-} -d "$L" "${lms[@]}" -o "$OUT/cv" "${resume[@]}"
