#!/usr/bin/env bash
# Creates the Python environment that regenerates the golden fixtures (scripts/fixtures/*.py) and
# runs the reference checks (scripts/check_export.py, bench/reference/*.py on CPU).
# CI does not need it: fixtures are committed. Usage: scripts/setup_reference_env.sh [VENV=/opt/ref]
set -euo pipefail
VENV=${1:-/opt/ref}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.11.0 numpy==2.4.6 transformers==4.57.1 peft==0.21.2 \
  gguf==0.19.0 sacrebleu==2.5.1 rouge-score==0.1.2 nltk==3.9.1 safetensors==0.8.0 \
  pycocoevalcap==1.2 tensorly==0.10.0 bitsandbytes==0.50.2
# galore-torch 1.0 pins nothing useful; its import needs bitsandbytes and tensorly (above)
"$VENV/bin/pip" install -q --no-deps galore-torch==1.0
"$VENV/bin/python" -c "import torch, transformers, galore_torch, sacrebleu, rouge_score, nltk; print('reference env ok:', torch.__version__)"
