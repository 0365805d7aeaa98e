"""The largest-batch rule of crates/bench/src/p3_max.rs, for the PyTorch references (same rule, same
JSON keys in the `max_batch` object).

Peak memory is affine in the batch at a fixed sequence length: `peak(b) = fixed + b * per_sample`.
Two points give both constants: the base run at b0 (its steady-state peak) and a probe at 2 b0
running the warm-up steps. b_max = floor((budget / overhead - fixed) / per_sample), at least the
probe's batch, at most `limit`; budget = free device memory (+ what the allocator holds) at the
start of the arm minus `free_fraction` of the card; overhead = reserved / allocated at the probe.
Refinement: the peak is convex piecewise-affine in b (the moment of the step holding the most
activations takes over at large b), so a line underestimates it beyond its points; when b_max is
more than twice the probe's batch, a second probe at b_max / 2 and the line through the two probes
give the final b_max. Plateau: when a probe's peak is within FLAT (0.5 %) of the point below it,
the peak is a batch-independent plateau (e.g. torch AdamW's optimizer step, above the activations
at small b): the probe batch doubles, at most MAX_FLAT times, and the search goes on from the last
flat point (the refinement then puts both points of the final line on the activations' piece).
b_max is run in full; on out-of-memory the batch steps down to min(b - 1, floor(0.9 b)) at most
`step_downs` times; the row says `oom at b=...`.

`python max_batch.py` runs the self-test (the same cases as the Rust unit tests)."""
import math

FLAT = 0.005
MAX_FLAT = 4


class Oom(Exception):
    """An attempt that ran out of device memory."""


class Failed(Exception):
    """An attempt that failed otherwise."""


def is_oom(msg):
    return "OUT_OF_MEMORY" in msg or "ALLOC_FAILED" in msg or "out of memory" in msg


def plan(base, probe, budget_gib, limit):
    """base, probe: dicts batch / used_gib / reserved_gib. Returns the plan dict; ValueError when
    the two points do not determine a growing line."""
    if probe["batch"] <= base["batch"]:
        raise ValueError(f"probe batch {probe['batch']} is not above the base batch {base['batch']}")
    per = (probe["used_gib"] - base["used_gib"]) / (probe["batch"] - base["batch"])
    if not (per > 0 and math.isfinite(per)):
        raise ValueError(f"peak memory did not grow with the batch ({base['used_gib']:.2f} GiB at "
                         f"b={base['batch']}, {probe['used_gib']:.2f} GiB at b={probe['batch']})")
    fixed = base["used_gib"] - base["batch"] * per
    ratio = probe["reserved_gib"] / probe["used_gib"] if probe["used_gib"] > 0 else float("nan")
    overhead = max(ratio, 1.0) if math.isfinite(ratio) else 1.0
    room = (budget_gib / overhead - fixed) / per
    fit = math.floor(room) if math.isfinite(room) and room > 0 else 0
    batch = min(max(fit, probe["batch"]), max(limit, 1))
    used = fixed + batch * per
    return {"per_sample_gib": per, "fixed_gib": fixed, "overhead": overhead, "batch": batch,
            "predicted_used_gib": used, "predicted_reserved_gib": used * overhead}


def step_down(b):
    return min(math.floor(b * 0.9), b - 1) if b > 0 else 0


def search(base, budget_gib, attempt, step_downs=2, limit=512):
    """attempt(batch, kind) with kind "probe" or "final" returns (mem point dict, result) or raises
    Oom / Failed, having released everything it allocated. Returns dict plan / attempts / best
    ((mem, result) or None) / error."""
    out = {"plan": None, "attempts": [], "best": None, "error": None}
    ooms = []

    def run(b, kind):
        try:
            mem, res = attempt(b, kind)
        except Oom:
            out["attempts"].append({"batch": b, "kind": kind, "peak_used_gib": None,
                                    "peak_reserved_gib": None, "error": "oom"})
            raise
        except Failed as e:
            out["attempts"].append({"batch": b, "kind": kind, "peak_used_gib": None,
                                    "peak_reserved_gib": None, "error": str(e)})
            raise
        out["attempts"].append({"batch": b, "kind": kind, "peak_used_gib": mem["used_gib"],
                                "peak_reserved_gib": mem["reserved_gib"], "error": None})
        return mem, res

    probe_b = min(2 * base["batch"], max(limit, 1))
    if probe_b <= base["batch"]:
        out["error"] = f"limit {limit} leaves no batch above the base batch {base['batch']}"
        return out
    low, probe_at = base, probe_b
    refined, flat = False, 0
    while True:
        try:
            mem, _ = run(probe_at, "probe")
        except Oom:
            ooms.append(probe_at)
            b = step_down(probe_at)
            break
        except Failed as e:
            out["error"] = str(e)
            return out
        up = min(2 * probe_at, max(limit, 1))
        if mem["used_gib"] <= low["used_gib"] * (1 + FLAT) and flat < MAX_FLAT and up > probe_at:
            flat += 1
            low, probe_at = mem, up  # a plateau: probe higher
            continue
        try:
            p = plan(low, mem, budget_gib, limit)
        except ValueError as e:
            out["error"] = str(e)
            return out
        out["plan"] = p
        nxt = p["batch"] // 2
        if not refined and nxt > probe_at:
            refined = True
            low, probe_at = mem, nxt  # refine: a second probe at half the prediction
            continue
        b = p["batch"]
        break
    downs = 0
    while b > base["batch"]:
        try:
            out["best"] = run(b, "final")
            break
        except Oom:
            ooms.append(b)
            if downs == step_downs:
                break
            downs += 1
            b = step_down(b)
        except Failed as e:
            out["error"] = str(e)
            return out
    if ooms:
        out["error"] = "oom at b=" + ", ".join(str(b) for b in ooms)
    return out


def simulated(fixed, per, overhead, capacity):
    """(used, reserved) GiB at b of an affine memory model, and the card's capacity."""
    def at(b):
        used = fixed + b * per
        return used, used * overhead
    return at, capacity


def _self_test():
    at, cap = simulated(20.0, 3.0, 1.04, 139.0)

    def point(b):
        u, r = at(b)
        return {"batch": b, "used_gib": u, "reserved_gib": r}

    def device(capacity, calls):
        def attempt(b, kind):
            calls.append((b, kind))
            m = point(b)
            if m["reserved_gib"] > capacity:
                raise Oom("CUDA out of memory")
            return m, b
        return attempt

    budget = 0.97 * cap
    p = plan(point(4), point(8), budget, 512)
    assert abs(p["per_sample_gib"] - 3) < 1e-12 and abs(p["fixed_gib"] - 20) < 1e-12, p
    assert p["batch"] == 36 and p["predicted_reserved_gib"] <= budget, p
    assert plan(point(4), point(8), 30.0, 512)["batch"] == 8
    assert plan(point(4), point(8), 1e6, 100)["batch"] == 100
    flat = {"batch": 4, "used_gib": 30.0, "reserved_gib": 31.0}
    try:
        plan(flat, dict(flat, batch=8), 100.0, 512)
        raise AssertionError("a flat line was accepted")
    except ValueError as e:
        assert "did not grow" in str(e)
    assert [step_down(b) for b in (40, 36, 9, 5, 1)] == [36, 32, 8, 4, 0]
    assert is_oom("CUDA out of memory. Tried to allocate") and not is_oom("shape mismatch")
    calls = []
    s = search(point(4), budget, device(cap, calls))
    assert calls == [(8, "probe"), (18, "probe"), (36, "final")] and s["best"][1] == 36, calls
    assert s["error"] is None, s
    calls = []
    s = search(point(4), budget, device(119.0, calls))
    assert [c[0] for c in calls] == [8, 18, 36, 32, 28] and s["best"][1] == 28, calls
    assert s["error"] == "oom at b=36, 32", s
    calls = []
    s = search(point(4), budget, device(50.0, calls))
    assert [c[0] for c in calls] == [8, 18, 16, 14, 12] and s["best"] is None, calls
    assert s["error"] == "oom at b=18, 16, 14, 12", s
    def at_peak(b, p):
        return {"batch": b, "used_gib": p, "reserved_gib": p}

    def card(peak, capacity, calls):
        """A device whose peak at batch b is peak(b) (used = reserved), capacity GiB in all."""
        def attempt(b, kind):
            calls.append((b, kind))
            if peak(b) > capacity:
                raise Oom("out of memory")
            return at_peak(b, peak(b)), b
        return attempt

    # convex peak (whole-model step): the refining probe finds the steep piece
    def convex(b):
        return max(75.0 + 0.3 * b, 62.6 + 2.4 * b)
    calls = []
    s = search(at_peak(4, convex(4)), budget, card(convex, cap, calls))
    assert calls == [(8, "probe"), (22, "probe"), (30, "final")] and s["best"][1] == 30, calls
    assert abs(s["plan"]["per_sample_gib"] - 2.4) < 1e-9, s
    calls = []
    s = search(point(4), 100.0, device(40.0, calls))
    assert calls == [(8, "probe"), (7, "final"), (6, "final")] and s["best"][1] == 6, calls
    assert s["plan"] is None and s["error"] == "oom at b=8, 7", s

    # plateau (torch AdamW: the optimizer step's peak is above the activations up to b ~ 12)
    def plateau(b):
        return max(62.8, 13.5 + 4.0 * b)
    calls = []
    s = search(at_peak(4, plateau(4)), budget, card(plateau, cap, calls))
    assert [c[0] for c in calls[:2]] == [8, 16] and s["error"] is None, (calls, s)
    assert abs(s["plan"]["per_sample_gib"] - 4.0) < 1e-9 and s["best"][1] == 30, (calls, s)
    # a plateau up to the limit: reported, not run
    calls = []
    s = search(at_peak(4, 62.8), budget, card(lambda b: 62.8, math.inf, calls), limit=64)
    assert [c[0] for c in calls] == [8, 16, 32, 64] and "did not grow" in s["error"], (calls, s)

    def broken(b, kind):
        raise Failed("shape mismatch")
    s = search(point(4), 100.0, broken)
    assert s["error"] == "shape mismatch" and len(s["attempts"]) == 1, s
    print("max_batch self-test: ok")


if __name__ == "__main__":
    _self_test()
