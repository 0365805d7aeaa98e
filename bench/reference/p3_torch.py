"""P3/P4 reference: end-to-end training steps of a LLaMA-2-7B-shaped transformers
LlamaForCausalLM (random init, bf16 weights, sdpa attention, no gradient checkpointing) at batch
4 x sequence 512 on random tokens, loss = causal LM, no clipping; the same setting as
crosslore-bench p3 (crates/bench/src/p3.rs).

Arms:
  adamw          torch.optim.AdamW (foreach; bf16 states, as the bf16 parameters)
  lora / dora    peft LoRA / DoRA r=128, alpha 256, all-linear, dropout 0 (peft defaults otherwise:
                 the adapter weights are upcast to f32), torch AdamW on the adapters
  galore         galore-torch 1.0 GaLoreAdamW r=128, gap 200, scale 0.25, std on the 224
                 attention/MLP matrices, the rest plain
  galore-layerwise  the same, one optimizer per parameter stepped in a post-accumulate-grad
                 hook (galore-torch README, "per-layer weight updates")
GaLore's refresh (224 x torch.linalg.svd, ~256-292 s on the H200) does not fit a device call: the
projectors are installed before the first step as random orthonormal matrices (the shape and
dtype galore-torch stores) with state["step"] = 1, so every timed step is a steady step; the
refresh is amortised separately from P1's measured SVD time.

Time: median of --steps synchronised steps after --warmup. MFU = 6 N tokens / time / peak, peak =
bf16 8192^3 matmul rate measured here, N = base model parameters. Memory: max_memory_allocated
(and max_memory_reserved) after reset_peak_memory_stats, model creation included.

Largest batch (--max-batch): after each arm's run at --batch, the largest batch that fits, by the
rule of crates/bench/src/p3_max.rs (bench/reference/max_batch.py: a probe at 2x the batch running
the warm-up steps, peak affine in the batch, --max-batch-free of the card left free, at most two
x0.9 step-downs after torch.cuda.OutOfMemoryError); the result's `max_batch` object has the same
keys as crosslore-bench's. --max-batch-simulate FIXED,PER_SAMPLE,OVERHEAD,CAPACITY (GiB) replaces
the device memory figures by that affine model (CPU smoke test of the search).

Usage: python p3_torch.py --out p3_torch.json [--arms adamw,lora,dora,galore,galore-layerwise] [--max-batch]
REF_DEVICE=cpu REF_SHRINK=16 REF_LAYERS=1 give a CPU smoke test.
"""
import argparse
import gc
import json
import statistics
import time

import torch

from common import (DEVICE, FFN, HIDDEN, LAYERS, RANK, VOCAB, device_name, import_galore, install_projector, matmul_rate,
                    sync)
import max_batch

SEQ_FULL = 512


def llama(seq):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=VOCAB,
                      max_position_embeddings=max(4096, seq), rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, hidden_act="silu", attn_implementation="sdpa")
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(DEVICE):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model.config.use_cache = False
    model.train()
    return model


def is_target(name):
    return any(f"{k}.weight" in name for k in
               ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


def build(arm, seq):
    """(model, step function taking a batch)."""
    model = llama(seq)
    if arm in ("lora", "dora"):
        from peft import LoraConfig, get_peft_model
        lcfg = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules="all-linear", lora_dropout=0.0,
                          use_dora=(arm == "dora"), task_type="CAUSAL_LM")
        model = get_peft_model(model, lcfg)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def stepper(opt):
        def step(ids):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss
        return step

    if arm in ("adamw", "lora", "dora"):
        return model, stepper(torch.optim.AdamW([p for _, p in params], lr=1e-5))
    GaLoreAdamW, GaLoreProjector, _ = import_galore()
    gal = [p for n, p in params if is_target(n)]
    rest = [p for n, p in params if not is_target(n)]
    assert len(gal) == 7 * LAYERS, len(gal)
    gkw = dict(rank=RANK, update_proj_gap=200, scale=0.25, proj_type="std")
    if arm == "galore":
        opt = GaLoreAdamW([{"params": rest}, {"params": gal, **gkw}], lr=1e-5)
        for p in gal:
            install_projector(opt, p, GaLoreProjector)
        return model, stepper(opt)
    assert arm == "galore-layerwise", arm
    # galore-torch README: one optimizer per parameter, stepped as soon as its gradient exists.
    opts = {}
    for p in rest:
        opts[p] = GaLoreAdamW([{"params": [p]}], lr=1e-5)
    for p in gal:
        opts[p] = GaLoreAdamW([{"params": [p], **gkw}], lr=1e-5)
        install_projector(opts[p], p, GaLoreProjector)

    def hook(p):
        if p.grad is None:
            return
        opts[p].step()
        opts[p].zero_grad(set_to_none=True)
    for p in opts:
        p.register_post_accumulate_grad_hook(hook)

    def step(ids):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss
    model._p3_opts = opts  # keep alive with the model
    return model, step


def run_arm(arm, batch, seq, warmup, steps, n_params, peak):
    gc.collect()
    if DEVICE != "cpu":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, step = build(arm, seq)
    sync()
    build_s = time.perf_counter() - t0
    g = torch.Generator(device="cpu").manual_seed(1)
    batches = [torch.randint(0, VOCAB, (batch, seq), generator=g).to(DEVICE) for _ in range(warmup + steps)]
    samples, first_s, loss = [], None, None
    for i, ids in enumerate(batches):
        sync()
        t = time.perf_counter()
        loss = step(ids)
        sync()
        dt = time.perf_counter() - t
        if i == 0:
            first_s = dt
        if i >= warmup:
            samples.append(dt)
    s = statistics.median(samples) if samples else float("nan")
    tokens = batch * seq
    r = {"arm": arm, "samples_s": samples, "step_s": s, "tokens_per_s": tokens / s,
         "mfu": 6 * n_params * tokens / s / peak, "first_step_s": first_s, "build_s": build_s,
         "loss": float(loss.item()),
         "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if DEVICE != "cpu":
        r["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        r["max_memory_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    del model, step, batches
    return r


GIB = 2**30


def release():
    """Frees what a finished or failed attempt left (cycles through hooks, cached blocks)."""
    gc.collect()
    if DEVICE != "cpu":
        torch.cuda.empty_cache()


def memory_budget(free_fraction):
    """(card GiB, reservation GiB the next run may make): free memory plus what torch's allocator
    holds, minus free_fraction of the card."""
    release()
    free, total = torch.cuda.mem_get_info()
    held = torch.cuda.memory_reserved()
    return total / GIB, (free + held) / GIB - free_fraction * total / GIB


def max_batch_arm(arm, base, a, n_params, peak):
    """The largest-batch search of one arm whose run at a.batch gave `base` (a result dict)."""
    sim = None
    if a.max_batch_simulate:
        fixed, per, overhead, cap = (float(x) for x in a.max_batch_simulate.split(","))
        at, cap = max_batch.simulated(fixed, per, overhead, cap)
        sim = (at, cap)
        total, budget = cap, cap * (1 - a.max_batch_free)
        u, r = at(a.batch)
        base_point = {"batch": a.batch, "used_gib": u, "reserved_gib": r}
    elif DEVICE != "cpu":
        total, budget = memory_budget(a.max_batch_free)
        base_point = {"batch": a.batch, "used_gib": base["max_memory_allocated_gib"],
                      "reserved_gib": base["max_memory_reserved_gib"]}
    else:
        total, budget, base_point = float("nan"), float("nan"), None
    rep = {"batch": None, "free_fraction": a.max_batch_free, "total_gib": total, "budget_gib": budget,
           "base": base_point or {"batch": a.batch, "used_gib": float("nan"), "reserved_gib": float("nan")},
           "plan": None, "attempts": [], "samples_s": [], "step_s": float("nan"), "tokens_per_s": float("nan"),
           "mfu": float("nan"), "peak_used_gib": None, "peak_reserved_gib": None, "first_step_s": float("nan"),
           "error": None}
    if base_point is None:
        rep["error"] = "no device memory figures (CUDA) for the search"
        return rep

    def attempt(b, kind):
        if sim is not None and sim[0](b)[1] > sim[1]:
            raise max_batch.Oom(f"simulated out of memory: {sim[0](b)[1]:.1f} GiB at b={b}")
        # the first step allocates the optimizer state, the second is a steady step
        warmup, steps = (max(a.warmup, 2), 0) if kind == "probe" else (a.warmup, max(a.max_batch_reps, 1))
        err = None
        try:
            r = run_arm(arm, b, a.seq, warmup, steps, n_params, peak)
        except Exception as e:  # noqa: BLE001 - classified below; the attempt's memory is freed first
            msg = f"{type(e).__name__}: {e}"[:500]
            oom = (DEVICE != "cpu" and isinstance(e, torch.cuda.OutOfMemoryError)) or max_batch.is_oom(msg)
            err = max_batch.Oom(msg) if oom else max_batch.Failed(msg)
        release()  # outside the except block: the traceback's frames (model, batches) are gone
        if err is not None:
            print(f"p3 max batch {arm} b={b} {kind}: {err}", flush=True)
            raise err
        if sim is not None:
            u, res = sim[0](b)
        else:
            u, res = r.get("max_memory_allocated_gib", float("nan")), r.get("max_memory_reserved_gib", float("nan"))
        return {"batch": b, "used_gib": u, "reserved_gib": res}, r

    s = max_batch.search(base_point, budget, attempt, step_downs=2, limit=a.max_batch_limit)
    rep.update(plan=s["plan"], attempts=s["attempts"], error=s["error"])
    if s["best"] is not None:
        mem, r = s["best"]
        tokens = mem["batch"] * a.seq
        rep.update(batch=mem["batch"], samples_s=r["samples_s"], step_s=r["step_s"],
                   tokens_per_s=tokens / r["step_s"], mfu=6 * n_params * tokens / r["step_s"] / peak,
                   peak_used_gib=mem["used_gib"], peak_reserved_gib=mem["reserved_gib"],
                   first_step_s=r["first_step_s"])
    return rep


def max_batch_table(rep):
    def gib(v):
        return "-" if v is None else f"{v:.1f}"
    print(f"\nP3/P4 at the largest batch that fits (seq {rep['seq']}; rule: crates/bench/src/p3_max.rs)\n")
    print("| arm | batch | s / step | tokens / s | MFU | peak used GiB | peak reserved GiB | predicted reserved GiB "
          "| budget GiB | attempts | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rep["results"]:
        m = r.get("max_batch")
        if m is None:
            continue
        tries = "; ".join(
            f"{'probe ' if t['kind'] == 'probe' else ''}b={t['batch']}: "
            + ("oom" if t["error"] == "oom" else "failed" if t["error"] else f"{gib(t['peak_used_gib'])} GiB")
            for t in m["attempts"])
        pred = "-" if m["plan"] is None else f"{m['plan']['predicted_reserved_gib']:.1f}"
        note = m["error"] or ""
        if m["batch"] is None:
            print(f"| {r['arm']} | - | | | | | | {pred} | {m['budget_gib']:.1f} | {tries} | {note} |")
            continue
        print(f"| {r['arm']} | {m['batch']} | {m['step_s']:.3f} | {m['tokens_per_s']:.0f} | {100 * m['mfu']:.1f} % | "
              f"{gib(m['peak_used_gib'])} | {gib(m['peak_reserved_gib'])} | {pred} | {m['budget_gib']:.1f} | {tries} "
              f"| {note} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", default="adamw,lora,dora,galore,galore-layerwise")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=SEQ_FULL)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--max-batch", action="store_true", help="also each arm's largest batch (module docs)")
    ap.add_argument("--max-batch-free", type=float, default=0.03, help="fraction of the card left free")
    ap.add_argument("--max-batch-reps", type=int, default=2, help="timed steps at the largest batch")
    ap.add_argument("--max-batch-limit", type=int, default=512, help="largest batch ever tried")
    ap.add_argument("--max-batch-simulate", default=None, help="FIXED,PER_SAMPLE,OVERHEAD,CAPACITY GiB (CPU smoke)")
    a = ap.parse_args()
    import peft
    import transformers
    peak = matmul_rate(8192, 8192, 8192, torch.bfloat16, reps=5)
    # embeddings + head + per layer (q, k, v, o, gate, up, down, 2 norms) + final norm
    n_params = 2 * VOCAB * HIDDEN + LAYERS * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * FFN + 2 * HIDDEN) + HIDDEN
    rep = {"device": device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "batch": a.batch, "seq": a.seq, "layers": LAYERS,
           "bf16_matmul_flops": peak, "n_params": n_params, "results": []}
    print(f"bf16 matmul {peak / 1e12:.0f} TFLOP/s, N = {n_params}", flush=True)
    for arm in a.arms.split(","):
        try:
            r = run_arm(arm, a.batch, a.seq, a.warmup, a.steps, n_params, peak)
        except Exception as e:  # noqa: BLE001 - an OOM in one arm must not stop the others
            r = {"arm": arm, "error": f"{type(e).__name__}: {e}"[:500]}
        release()
        if a.max_batch and "error" not in r:
            r["max_batch"] = max_batch_arm(arm, r, a, n_params, peak)
        print(json.dumps(r), flush=True)
        rep["results"].append(r)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(rep, f, indent=1)
    print("| arm | s / step | tokens / s | MFU | first step s | max allocated GiB | max reserved GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rep["results"]:
        if "error" in r:
            print(f"| {r['arm']} | FAILED {r['error'][:120]} | | | | | |")
            continue
        print(f"| {r['arm']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {100 * r['mfu']:.1f} % | "
              f"{r['first_step_s']:.2f} | {r.get('max_memory_allocated_gib', float('nan')):.1f} | "
              f"{r.get('max_memory_reserved_gib', float('nan')):.1f} |")
    if a.max_batch:
        max_batch_table(rep)


if __name__ == "__main__":
    main()
