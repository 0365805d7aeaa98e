#!/usr/bin/env python3
"""Which option letters the MathQA runs answer (issue 6), from the run folders' `summary.json`.

A model that answers the same letter for every problem scores that letter's share of the test
problems; this table shows whether a run's accuracy is above that. Stdlib only. Run from the
repository root:

    python3 experiments/answer_letters.py runs/experiments/mathqa-runs 200 > experiments/results/mathqa-grid/letters.md
"""
import collections
import json
import sys
from pathlib import Path


def main():
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/experiments/mathqa-runs")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    test = [json.loads(line) for line in Path("data/mathqa/test.jsonl").read_text().splitlines() if line]
    share = collections.Counter(r["answer"] for r in test[:n])
    print(f"# MathQA: answers per run (`{runs}`)\n")
    print(f"Correct-letter shares of the first {n} test problems: "
          + ", ".join(f"{k} {share[k] / n:.3f}" for k in sorted(share)) + ".\n")
    print("| run | accuracy | most frequent answers (count) | share of the top letter | accuracy - that letter's share |")
    print("|---|---|---|---|---|")
    for d in sorted(runs.iterdir()):
        f = d / "summary.json"
        if not f.is_file():
            continue
        ev = json.loads(f.read_text())["eval_after"]
        outs = [str(o.get("output", "") if isinstance(o, dict) else o).strip()[:1] for o in ev["outputs"]]
        c = collections.Counter(outs)
        top, cnt = c.most_common(1)[0]
        acc = ev["metrics"]["accuracy"]
        common = ", ".join(f"{k or '(empty)'} {v}" for k, v in c.most_common(3))
        print(f"| {d.name} | {acc:.3f} | {common} | {cnt / len(outs):.2f} | {acc - share[top] / n:+.3f} |")


if __name__ == "__main__":
    main()
