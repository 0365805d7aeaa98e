"""Issue 8 reference: one LLaMA-2-7B decoder layer and its operations in PyTorch on the same GPU,
bf16, batch 4 x sequence 512, forward and forward + backward; the counterpart of
`crosslore-bench layer` (the whole layer) and `crosslore-bench fused-ops` (the operations).

Per op (RMSNorm, RoPE and SwiGLU at the shapes crates/bench/src/check_fused.rs times): RMSNorm
[2048, 4096] (transformers' LlamaRMSNorm), RoPE on q [4, 32, 512, 128] (apply_rotary_pos_emb),
SwiGLU silu(g) * u [2048, 11008]; and the attention core (plain: matmul, f32 softmax with the causal mask, matmul; and
SDPA causal), the head (lm_head 32000 + cross-entropy), one linear (q_proj). Layer:
transformers LlamaDecoderLayer with eager and sdpa attention. Median of REPS after WARMUP,
synchronised CUDA events. FLOPs counted as crates/bench/src/layer.rs counts them.

REF_DEVICE=cpu REF_SHRINK=16 give a CPU smoke run.
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from common import DEVICE, FFN, VOCAB, device_name
from common import HIDDEN as HID
from common import SHRINK as S_

B, SEQ, NH = 4, 512 // S_, max(1, 32 // S_)
D = HID // NH
DT = torch.bfloat16
WARMUP, REPS = 3, 10


def timed(fn):
    for _ in range(WARMUP):
        fn()
    ts = []
    for _ in range(REPS):
        if DEVICE == "cuda":
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b) / 1e3)
        else:
            import time
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def fwd_bwd(make_inputs, f):
    """(forward seconds, forward+backward seconds) of f on fresh leaf inputs."""
    xs = make_inputs()
    out = f(*xs)
    g = torch.randn_like(out)

    def fb():
        ys = [x.detach().requires_grad_() for x in xs]
        f(*ys).backward(g)

    with torch.no_grad():
        tf = timed(lambda: f(*xs))
    return tf, timed(fb)


def rnd(*shape):
    return torch.randn(*shape, device=DEVICE).to(DT).requires_grad_()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from transformers import LlamaConfig
    from transformers.models.llama import modeling_llama as ml

    torch.manual_seed(0)
    rows = B * SEQ
    res = {"device": device_name(), "torch": torch.__version__,
           "shape": {"batch": B, "seq": SEQ, "hidden": HID, "ffn": FFN, "heads": NH, "vocab": VOCAB}, "ops": {}}
    a = torch.randn(8192 // S_, 8192 // S_, device=DEVICE, dtype=DT)
    t = timed(lambda: a @ a)
    res["bf16_tflops"] = 2 * (8192 // S_) ** 3 / t / 1e12
    del a
    cfg = LlamaConfig(hidden_size=HID, intermediate_size=FFN, num_attention_heads=NH, num_key_value_heads=NH,
                      vocab_size=VOCAB, max_position_embeddings=4096, rms_norm_eps=1e-5)
    rope = ml.LlamaRotaryEmbedding(cfg).to(DEVICE)
    pos = torch.arange(SEQ, device=DEVICE)[None].expand(B, -1)
    xh = torch.zeros(B, SEQ, HID, device=DEVICE, dtype=DT)
    cos, sin = rope(xh, pos)
    norm = ml.LlamaRMSNorm(HID, eps=1e-5).to(DEVICE, DT)
    ops = res["ops"]

    def put(name, tf, tfb):
        ops[name] = {"fwd_ms": tf * 1e3, "fwd_bwd_ms": tfb * 1e3}

    put("rms_norm [2048, 4096]", *fwd_bwd(lambda: [rnd(rows, HID)], norm))
    put("rope q [4, 32, 512, 128]", *fwd_bwd(
        lambda: [rnd(B, NH, SEQ, D)], lambda q: ml.apply_rotary_pos_emb(q, q, cos, sin)[0]))
    put("swiglu [2048, 11008]", *fwd_bwd(lambda: [rnd(rows, FFN), rnd(rows, FFN)], lambda g, u: F.silu(g) * u))
    causal = torch.full((SEQ, SEQ), float("-inf"), device=DEVICE).triu(1)

    def plain(q, k, v):
        s = (q @ k.transpose(-1, -2)) * D ** -0.5
        p = torch.softmax(s.float() + causal, dim=-1).to(DT)
        return p @ v

    qkv = lambda: [rnd(B, NH, SEQ, D), rnd(B, NH, SEQ, D), rnd(B, NH, SEQ, D)]
    put("attention core plain", *fwd_bwd(qkv, plain))
    put("attention core sdpa", *fwd_bwd(qkv, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    lin = torch.nn.Linear(HID, HID, bias=False, device=DEVICE, dtype=DT)
    put("linear q_proj [2048, 4096] x [4096, 4096]", *fwd_bwd(lambda: [rnd(rows, HID)], lin))
    head = torch.nn.Linear(HID, VOCAB, bias=False, device=DEVICE, dtype=DT)
    tgt = torch.randint(0, VOCAB, (rows,), device=DEVICE)
    put("head + cross-entropy [2048, 4096] -> 32000", *fwd_bwd(
        lambda: [rnd(rows, HID)], lambda h: F.cross_entropy(head(h).float(), tgt)))
    del head, lin
    n_params = 4 * HID * HID + 3 * HID * FFN + 2 * HID
    flops = 6 * n_params * rows + 12 * B * SEQ * SEQ * HID
    res["layer"] = {}
    mask = causal[None, None].to(DT).expand(B, 1, SEQ, SEQ)
    for impl in ["eager", "sdpa"]:
        cfg._attn_implementation = impl
        layer = ml.LlamaDecoderLayer(cfg, 0).to(DEVICE, DT)
        am = mask if impl == "eager" else None

        def call(x):
            y = layer(x, attention_mask=am, position_ids=pos, position_embeddings=(cos, sin))
            return y[0] if isinstance(y, tuple) else y  # a tuple in older transformers
        tf, tfb = fwd_bwd(lambda: [rnd(B, SEQ, HID)], call)
        res["layer"][impl] = {"fwd_ms": tf * 1e3, "fwd_bwd_ms": tfb * 1e3, "fwd_bwd_tflops": flops / tfb / 1e12}
        del layer
    print(json.dumps(res, indent=1))
    print(f"| op (torch {torch.__version__}) | fwd ms | fwd+bwd ms |\n|---|---|---|")
    for k, v in ops.items():
        print(f"| {k} | {v['fwd_ms']:.3f} | {v['fwd_bwd_ms']:.3f} |")
    for k, v in res["layer"].items():
        print(f"| LlamaDecoderLayer {k} | {v['fwd_ms']:.2f} | {v['fwd_bwd_ms']:.2f} ({v['fwd_bwd_tflops']:.0f} TFLOP/s) |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
