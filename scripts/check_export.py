#!/opt/ref/bin/python
"""Check that a folder exported by crosslore loads in transformers and gives crosslore's logits.

    cargo run --release -p crosslore-model --example export_tiny -- /tmp/xl_export
    /opt/ref/bin/python scripts/check_export.py /tmp/xl_export

The folder must hold config.json, model.safetensors and rust_logits.safetensors (input_ids,
attention_mask, logits written by the Rust side). Exits non-zero on a mismatch above 1e-4
relative to the largest logit (f32 on both sides; see crates/model/tests/reference.rs).
"""
import sys

import torch
import transformers
import safetensors.torch as st

assert transformers.__version__ == "4.57.1", transformers.__version__
from transformers import LlamaForCausalLM  # noqa: E402

folder = sys.argv[1]
ref = st.load_file(f"{folder}/rust_logits.safetensors")
model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
with torch.no_grad():
    logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
err = ((logits - ref["logits"]).abs().max() / ref["logits"].abs().max()).item()
print(f"transformers {transformers.__version__} loaded {folder}: logits relative error {err:.3e}")
sys.exit(0 if err <= 1e-4 else 1)
