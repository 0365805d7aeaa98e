"""P1 reference: galore-torch 1.0's projection refresh (GaLoreProjector.project at a refresh
step, i.e. torch.linalg.svd(full_matrices=False) of the f32 gradient) for the LLaMA-2-7B
targeted matrices, rank 128, on the GPU. Each shape is timed on --samples matrices and the total
is extrapolated to the 224 matrices (128 x 4096x4096, 64 x 11008x4096, 32 x 4096x11008); the
residual ||G - P P^T G||_F / ||G||_F uses the same synthetic spectrum as crosslore-bench p1.

Usage: python galore_p1.py --out p1_torch.json
"""
import argparse
import json
from collections import Counter

import torch

from common import DEVICE, RANK, device_name, copy_bandwidth, import_galore, matmul_rate, synth_gradient, targets, timed

_, GaLoreProjector, GALORE_IMPORT = import_galore()


def residual(g, p, side):
    if side == "right":  # p: [r, n] (galore-torch keeps Vh[:r])
        d = g - (g @ p.T) @ p
    else:  # p: [m, r]
        d = g - p @ (p.T @ g)
    return (d.norm() / g.norm()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    ts = targets()
    counts = Counter((r, c) for _, _, r, c in ts)
    # warm-up: cuSOLVER handle and kernels
    proj = GaLoreProjector(8, update_proj_gap=200, scale=0.25, proj_type="std")
    proj.project(torch.randn(256, 128, device=DEVICE), 0)
    rows = []
    total = 0.0
    for (m, n), count in sorted(counts.items()):
        times, res = [], []
        for _ in range(a.samples):
            g = synth_gradient(m, n)
            p = GaLoreProjector(RANK, update_proj_gap=200, scale=0.25, proj_type="std")
            t, _ = timed(lambda: p.project(g, 0))
            side = "right" if m >= n else "left"
            times.append(t)
            res.append(residual(g, p.ortho_matrix, side))
            del g
        med = sorted(times)[len(times) // 2]
        total += med * count
        rows.append({"shape": f"{m}x{n}", "count": count, "svd_s": med, "residual": sum(res) / len(res)})
        print(f"galore-torch refresh {m}x{n}: {med:.3f} s/matrix, residual {res[0]:.5f}", flush=True)
    mean_res = sum(r["residual"] for r in rows) / len(rows)
    rep = {
        "torch": torch.__version__, "galore_torch": GALORE_IMPORT,
        "device": device_name(), "rank": RANK, "per_shape": rows,
        "total_s_extrapolated": total, "mean_residual_sampled": mean_res,
        "f32_thin_tflops": matmul_rate(4096, 4096, 136, torch.float32) / 1e12,
        "copy_tb_s": copy_bandwidth() / 1e12,
    }
    print("\n| method | total s (224 matrices, extrapolated from one per shape) | mean residual (sampled) |")
    print("|---|---|---|")
    print(f"| galore-torch 1.0 refresh (torch.linalg.svd) | {total:.2f} | {mean_res:.5f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rep, f, indent=1)


if __name__ == "__main__":
    main()
