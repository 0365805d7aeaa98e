"""P2 reference: one optimizer step without projection refresh on a LLaMA-2-7B-shaped set of
parameters (the 224 targeted matrices + embeddings, LM head, norms; bf16 weights and gradients),
torch.optim.AdamW (foreach and fused) and galore-torch 1.0 GaLoreAdamW (rank 128, gap 200,
scale 0.25, std on the 224 matrices; the rest plain). GaLore's projectors are installed before
timing (random orthonormal, in the gradient dtype as galore-torch stores them) and state["step"]
starts at 1, so no timed step refreshes. Median of --reps synchronised steps after 3 warm-ups.
Floor: bytes / measured copy bandwidth (bf16 weight/grad/state for torch AdamW: 14 B/element).

Usage: python galore_p2.py --out p2_torch.json [--targets-only]
"""
import argparse
import gc
import json

import torch

from common import (DEVICE, RANK, copy_bandwidth, device_name, import_galore, install_projector, matmul_rate, median_time,
                    other_params, targets)

GaLoreAdamW, GaLoreProjector, GALORE_IMPORT = import_galore()


def make_params(targets_only):
    specs = [(n, (r, c), True) for n, _, r, c in targets()]
    if not targets_only:
        specs += [(n, s, False) for n, s in other_params()]
    params = []
    for name, shape, proj in specs:
        p = torch.nn.Parameter(torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) * 0.02)
        p.grad = torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) * 1e-3
        params.append((name, p, proj))
    return params


def install_projectors(opt, params):
    for _, p, proj in params:
        if not proj:
            continue
        install_projector(opt, p, GaLoreProjector)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--targets-only", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    bw = copy_bandwidth()
    f32_thin = matmul_rate(4096, 4096, 136, torch.float32)
    bf16_thin = matmul_rate(4096, 4096, 128, torch.bfloat16)
    params = make_params(a.targets_only)
    n_el = sum(p.numel() for _, p, _ in params)
    results = []
    for label in ["torch AdamW (foreach)", "torch AdamW (fused)", "galore-torch GaLoreAdamW"]:
        ps = [p for _, p, _ in params]
        if label.startswith("galore"):
            proj = [p for _, p, pr in params if pr]
            plain = [p for _, p, pr in params if not pr]
            groups = [{"params": proj, "rank": RANK, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"}]
            if plain:
                groups.insert(0, {"params": plain})
            opt = GaLoreAdamW(groups, lr=1e-3)
            install_projectors(opt, params)
        else:
            opt = torch.optim.AdamW(ps, lr=1e-3, fused=label.endswith("(fused)"))
        t, samples = median_time(opt.step, 3, a.reps)
        state_bytes = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                          if torch.is_tensor(v)) + sum(
            st["projector"].ortho_matrix.numel() * 2 for st in opt.state.values() if "projector" in st)
        if label.startswith("galore"):
            byt, flops = 0.0, 0.0
            for _, p, pr in params:
                if pr:
                    m, n = p.shape
                    s, o = (n, m) if m >= n else (m, n)
                    byt += 6 * m * n + 4 * s * RANK + 12 * o * RANK  # bf16 low-rank state
                    flops += 4 * m * n * RANK
                else:
                    byt += 14 * p.numel()
        else:
            byt, flops = 14.0 * n_el, 0.0
        floor_b = byt / bw
        floor_f = flops / bf16_thin
        results.append({"method": label, "step_s": t, "samples_s": samples, "bytes": byt, "bytes_floor_s": floor_b,
                        "flops": flops, "flop_floor_s": floor_f, "state_bytes": state_bytes})
        print(f"{label}: {t*1e3:.2f} ms/step", flush=True)
        del opt
        gc.collect()
        torch.cuda.empty_cache()
    rep = {"torch": torch.__version__, "galore_torch": GALORE_IMPORT, "device": device_name(), "n_elements": n_el,
           "copy_bytes_per_s": bw, "f32_thin_flops": f32_thin, "bf16_thin_flops": bf16_thin, "methods": results}
    print(f"\nP2 torch, {len(params)} parameters ({n_el/1e9:.3f} B elements); copy {bw/1e12:.2f} TB/s, "
          f"bf16 thin matmul {bf16_thin/1e12:.0f} TFLOP/s\n")
    print("| method | step ms | bytes GB | bytes floor ms | FLOP floor ms (bf16) | measured / max floor | state GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        fl = max(r["bytes_floor_s"], r["flop_floor_s"])
        print(f"| {r['method']} | {r['step_s']*1e3:.2f} | {r['bytes']/1e9:.2f} | {r['bytes_floor_s']*1e3:.2f} | "
              f"{r['flop_floor_s']*1e3:.2f} | {r['step_s']/fl:.2f} | {r['state_bytes']/2**30:.2f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rep, f, indent=1)


if __name__ == "__main__":
    main()
