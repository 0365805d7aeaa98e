"""Issue 8 reference on the small model, where kernel launches dominate: training steps of a
SmolLM2-135M-shaped transformers LlamaForCausalLM (30 layers, hidden 576, FFN 1536, 9 heads / 3
KV heads, vocab 49152, tied embeddings, rope base 1e5; random init: speed does not depend on the
weights), bf16, sdpa attention, random tokens, torch AdamW (full) and peft LoRA r16 alpha 32
all-linear, no clipping. The counterpart of `crosslore-bench p3 --model smollm2` (fused and
autograd arms). Median of --steps synchronised steps after --warmup; tokens/s.

REF_DEVICE=cpu gives a CPU smoke run (use small --batch/--seq/--steps)."""
import argparse
import json
import statistics
import time

import torch

from common import DEVICE, sync


def model():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                      rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu", attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(DEVICE):
        m = LlamaForCausalLM(cfg).to(torch.bfloat16)
    m.config.use_cache = False
    m.train()
    return m


def run(arm, batch, seq, warmup, steps):
    m = model()
    if arm == "lora":
        from peft import LoraConfig, get_peft_model
        m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, 49152, (batch, seq), device=DEVICE)
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ts = []
    for i in range(warmup + steps):
        sync()
        t = time.perf_counter()
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= warmup:
            ts.append(time.perf_counter() - t)
    s = statistics.median(ts)
    peak = torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None
    return {"arm": arm, "step_s": s, "tokens_per_s": batch * seq / s, "samples_s": ts, "peak_gib": peak,
            "loss": loss.item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", default="adamw,lora")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    res = {"torch": torch.__version__, "batch": a.batch, "seq": a.seq, "arms": []}
    for arm in a.arms.split(","):
        r = run(arm, a.batch, a.seq, a.warmup, a.steps)
        res["arms"].append(r)
        print(f"| torch {arm} SmolLM2 shape, bf16, {a.batch} x {a.seq} | {r['step_s']*1e3:.1f} ms | "
              f"{r['tokens_per_s']:.0f} tok/s | peak {r['peak_gib']} GiB |", flush=True)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
