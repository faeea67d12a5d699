#!/usr/bin/env bash
# Creates the Python reference environment used ONLY by tools/reference/ scripts (golden
# fixtures, PyTorch/fastai peers for benchmarks). The C++ build and tests never need it.
#   torch 1.13 (CPU) from Debian, fastai 2.7.19 and spaCy 3.8.7 from PyPI.
# Usage: tools/reference/setup-venv.sh [VENV_DIR]   (default: ../refenv next to the repo)
set -euo pipefail
VENV="${1:-$(cd "$(dirname "$0")/../../.." && pwd)/refenv}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# libopenblas0-pthread: without it Debian's torch falls back to the reference BLAS and the
# PyTorch peer in bench/ is meaninglessly slow.
apt-get install -y -qq python3-venv python3-torch python3-torchvision fasttext libopenblas0-pthread
/usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install -q "fastai==2.7.19" "spacy==3.8.7"
"$VENV/bin/python" -c "import torch, fastai, spacy; print('torch', torch.__version__, 'fastai', fastai.__version__, 'spacy', spacy.__version__)"
echo "reference env ready: $VENV/bin/python"
