#!/usr/bin/env python3
"""Numerical study of the sparse residual variants (crates/optim/src/residual.rs), numpy only.

Run:  /opt/ref/bin/python scripts/residual_variants_study.py

Synthetic GaLore run on one m x n matrix: gradients = slowly drifting rank-8 signal + Gaussian
noise, right-side projector = exact top-r SVD of the gradient refreshed every `gap` steps,
galore-torch AdamW on R = G P, index set L (top 1.2% of |M' P^T|) selected at step k = gap.
For every step after k it compares the residual `delta` of each variant with the ideal one,
    ideal = full-rank AdamW update at L - GaLore low-rank update at L
(both in galore-torch's form sqrt(1-b2^t)/(1-b1^t) * M/(sqrt(V)+eps)), and reports the mean
relative error ||delta - ideal|| / ||ideal||, max |delta| (the low-rank update itself is O(1)),
and for `paper` the fraction of positions where sqrt's argument is clipped at 0.
Variants: none (ratio 0), paper (Alg. 2 as in DESIGN.md §1.2 item 3), tracked
(ResidualMode::TrackedMoments: full moments at L initialised from the low-rank ones).
"""
import numpy as np

B1, B2, EPS = 0.9, 0.999, 1e-6


def run(seed, noise, m=256, n=192, r=16, gap=50, ratio=0.012, steps=300):
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((m, 8)), rng.standard_normal((8, n))
    mf, vf = np.zeros((m, n)), np.zeros((m, n))  # full AdamW moments (for the ideal residual)
    mo = vo = p = idx = None
    st, err, mx, clip = {}, {k: [] for k in ("none", "paper", "tracked")}, {}, []
    for t in range(1, steps + 1):
        u += 0.05 * rng.standard_normal(u.shape)
        g = (u @ v) / 10 + noise * rng.standard_normal((m, n))
        mf, vf = B1 * mf + (1 - B1) * g, B2 * vf + (1 - B2) * g * g
        if (t - 1) % gap == 0:
            p = np.linalg.svd(g, full_matrices=False)[2][:r].T
            if mo is None:
                mo, vo = np.zeros((m, r)), np.zeros((m, r))
        rr = g @ p
        mo, vo = B1 * mo + (1 - B1) * rr, B2 * vo + (1 - B2) * rr * rr
        bc1, bc2 = 1 - B1 ** t, 1 - B2 ** t
        step = np.sqrt(bc2) / bc1
        if idx is None:
            if t >= gap:
                k = int(round(ratio * m * n))
                idx = np.sort(np.argsort(-np.abs(mo @ p.T).ravel(), kind="stable")[:k])
                st["paper"] = [np.zeros(k), np.zeros(k)]
                st["tracked"] = [(mo @ p.T).ravel()[idx], (vo @ (p * p).T).ravel()[idx]]
            continue
        full = step * (mf / (np.sqrt(vf) + EPS)).ravel()[idx]
        low = step * ((mo / (np.sqrt(vo) + EPS)) @ p.T).ravel()[idx]
        ideal = full - low
        gl = g.ravel()[idx]
        gh = (rr @ p.T).ravel()[idx]
        dg = gl - gh
        dm, dv = st["paper"]
        dm, dv = B1 * dm + (1 - B1) * dg, B2 * dv + 2 * (1 - B2) * gh * dg
        st["paper"] = [dm, dv]
        arg = (vo @ p.T).ravel()[idx] / bc2 + dv / bc2
        clip.append(np.mean(arg <= 0))
        d_paper = (dm / bc1) / (np.sqrt(np.maximum(arg, 0)) + EPS)
        ml, vl = st["tracked"]
        ml, vl = B1 * ml + (1 - B1) * gl, B2 * vl + (1 - B2) * gl * gl
        st["tracked"] = [ml, vl]
        d_tracked = step * (ml / (np.sqrt(vl) + EPS)) - low
        for name, d in (("none", np.zeros_like(ideal)), ("paper", d_paper), ("tracked", d_tracked)):
            err[name].append(np.linalg.norm(d - ideal) / np.linalg.norm(ideal))
            mx[name] = max(mx.get(name, 0.0), float(np.abs(d).max()))
    return {k: (float(np.mean(e)), mx[k]) for k, e in err.items()}, float(np.mean(clip))


def main():
    for seed, noise in [(0, 0.3), (1, 0.1), (2, 1.0)]:
        res, clip = run(seed, noise)
        cols = "; ".join(f"{k}: rel.err {e:.3g}, max|delta| {x:.3g}" for k, (e, x) in res.items())
        print(f"seed {seed} noise {noise}: {cols}; paper clipped fraction {clip:.2f}")


if __name__ == "__main__":
    main()
