"""Shared helpers of the PyTorch references (P1, P2, P3): LLaMA-2-7B shapes, synchronised timing,
GaLore's steady-step projectors, synthetic gradients with the same spectrum as crosslore-bench (crates/bench/src/synth.rs)."""
import importlib.util
import os
import statistics
import sys
import time
import types

import torch


_GALORE = None


def import_galore():
    """(GaLoreAdamW, GaLoreProjector, version note). `import galore_torch` also imports its 8-bit
    optimizer, i.e. bitsandbytes; if that fails on this machine, the package's own adamw.py and
    galore_projector.py are loaded without running its __init__ (same code, noted in the output).
    The result is cached: a second fallback would find the stand-in package without a spec."""
    global _GALORE
    if _GALORE is None:
        _GALORE = _import_galore()
    return _GALORE


def _import_galore():
    try:
        import galore_torch
        from galore_torch import GaLoreAdamW
        from galore_torch.galore_projector import GaLoreProjector
        return GaLoreAdamW, GaLoreProjector, "galore_torch (full import)"
    except Exception as e:  # noqa: BLE001 - report and fall back
        print(f"import galore_torch failed ({type(e).__name__}: {e}); loading its modules directly", flush=True)
        spec = importlib.util.find_spec("galore_torch")
        if spec is None:
            raise
        pkg = types.ModuleType("galore_torch")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["galore_torch"] = pkg
        from galore_torch.adamw import AdamW as GaLoreAdamW
        from galore_torch.galore_projector import GaLoreProjector
        return GaLoreAdamW, GaLoreProjector, "galore_torch modules (no __init__)"

# REF_DEVICE=cpu REF_SHRINK=16 REF_LAYERS=1 give a seconds-long CPU smoke test of the scripts.
DEVICE = os.environ.get("REF_DEVICE", "cuda")
SHRINK = int(os.environ.get("REF_SHRINK", "1"))
HIDDEN, FFN, VOCAB, RANK = 4096 // SHRINK, 11008 // SHRINK, 32000 // SHRINK, max(1, 128 // SHRINK)
LAYERS = int(os.environ.get("REF_LAYERS", "32"))


def install_projector(opt, p, GaLoreProjector, rank=RANK):
    """Random orthonormal projector of galore-torch's shape/dtype in opt's state of p, step 1 (so no
    refresh before step 200)."""
    m, n = p.shape
    pr = GaLoreProjector(rank, update_proj_gap=200, scale=0.25, proj_type="std")
    if m >= n:  # right: ortho_matrix = Vh[:r], [r, n]
        pr.ortho_matrix = torch.linalg.qr(torch.randn(n, rank, device=p.device))[0].T.contiguous().to(p.dtype)
    else:  # left: U[:, :r], [m, r]
        pr.ortho_matrix = torch.linalg.qr(torch.randn(m, rank, device=p.device))[0].contiguous().to(p.dtype)
    st = opt.state[p]
    st["step"] = 1
    st["projector"] = pr


def targets(layers=LAYERS, hidden=HIDDEN, ffn=FFN):
    """(name, kind, rows, cols) of the 224 targeted matrices, HF [out, in] layout."""
    out = []
    for l in range(layers):
        for k in "qkvo":
            out.append((f"model.layers.{l}.self_attn.{k}_proj.weight", k, hidden, hidden))
        out.append((f"model.layers.{l}.mlp.gate_proj.weight", "gate", ffn, hidden))
        out.append((f"model.layers.{l}.mlp.up_proj.weight", "up", ffn, hidden))
        out.append((f"model.layers.{l}.mlp.down_proj.weight", "down", hidden, ffn))
    return out


def other_params(layers=LAYERS, hidden=HIDDEN, vocab=VOCAB):
    out = [("model.embed_tokens.weight", (vocab, hidden)), ("lm_head.weight", (vocab, hidden)),
           ("model.norm.weight", (hidden,))]
    for l in range(layers):
        out.append((f"model.layers.{l}.input_layernorm.weight", (hidden,)))
        out.append((f"model.layers.{l}.post_attention_layernorm.weight", (hidden,)))
    return out


def sync():
    if DEVICE != "cpu":
        torch.cuda.synchronize()


def device_name():
    return torch.cuda.get_device_name() if DEVICE != "cpu" else "cpu"


def timed(fn):
    """Seconds of one call, synchronised before and after."""
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def median_time(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    samples = [timed(fn)[0] for _ in range(reps)]
    return statistics.median(samples), samples


def synth_gradient(m, n, components=256, noise=0.01, device=None):
    """U diag(1/i) V^T + sigma N with orthonormal U [m,k], V [n,k]; noise = 1 % of the signal
    Frobenius norm (as crosslore-bench)."""
    device = device or DEVICE
    k = min(components, m, n)
    u = torch.linalg.qr(torch.randn(m, k, device=device))[0]
    v = torch.linalg.qr(torch.randn(n, k, device=device))[0]
    s = 1.0 / torch.arange(1, k + 1, device=device, dtype=torch.float32)
    sigma = noise * s.norm().item() / (m * n) ** 0.5
    return (u * s) @ v.T + sigma * torch.randn(m, n, device=device)


def copy_bandwidth(nbytes=1 << 30):
    nbytes //= SHRINK * SHRINK
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=DEVICE)
    y = torch.empty_like(x)
    t, _ = median_time(lambda: y.copy_(x), 2, 10)
    return 2 * nbytes / t


def matmul_rate(m, k, n, dtype, reps=10):
    m, k = max(1, m // SHRINK), max(1, k // SHRINK)
    a = torch.randn(m, k, device=DEVICE).to(dtype)
    b = torch.randn(k, n, device=DEVICE).to(dtype)
    t, _ = median_time(lambda: a @ b, 2, reps)
    return 2 * m * n * k / t
