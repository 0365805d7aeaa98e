#!/usr/bin/env python3
"""Extract the small task subsets shipped under `data/` from the PyPI sdist `bigbench==1.0.0`.

Reproduces `data/{e2e_nlg,mathqa,xsum,cnn_dm}/{train,test}.jsonl` and `data/manifest.json`
byte for byte (standard library only; any Python >= 3.8).

    python3 scripts/extract_bigbench.py                 # pip-downloads the sdist (358 MB) to a temp dir
    python3 scripts/extract_bigbench.py --sdist PATH    # use an already downloaded bigbench-1.0.0.tar.gz

Only the needed members are read from the tarball (nothing else is unpacked). Splits:
- E2E NLG (`gem/e2e_nlg/task.json`, 1000 (MR, reference) pairs, 213 MRs): split BY meaning
  representation: the MRs (in order of first appearance) are shuffled with `random.Random(SEED)`
  and the first round(20%) go to test; all references of an MR stay together (one JSONL line per MR).
- MathQA (`elementary_math_qa/question_only` + the `question_with_mathematical_hint` and
  `question_with_language_hint` variants of the same 7,688 problems, aligned by index): problems with
  exactly 5 options (7,500) are shuffled with the seed; 500 test + 2000 train.
- XSum (`gem/xsum/task.json`, 1001 docs): documents of at most MAX_DOC_CHARS characters, shuffled;
  100 test + 300 train.
- CNN/DailyMail (`factuality_of_summary/cnn_dm.json`, 150 articles with their reference highlights;
  the model-generated candidate summaries are dropped): shuffled; 50 test + 100 train.
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile

SDIST_NAME = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
SEED = 20261128
PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
MEMBERS = {
    "e2e": "gem/e2e_nlg/task.json",
    "mathqa_q": "elementary_math_qa/question_only/task.json",
    "mathqa_math": "elementary_math_qa/question_with_mathematical_hint/task.json",
    "mathqa_lang": "elementary_math_qa/question_with_language_hint/task.json",
    "xsum": "gem/xsum/task.json",
    "cnn_dm": "factuality_of_summary/cnn_dm.json",
}
E2E_TEST_FRACTION = 0.2
MATHQA_TRAIN, MATHQA_TEST = 2000, 500
XSUM_TRAIN, XSUM_TEST, MAX_DOC_CHARS = 300, 100, 6000
CNN_TRAIN, CNN_TEST = 100, 50
LETTERS = "abcde"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_sdist(dest):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "bigbench==1.0.0", "-d", dest]
    subprocess.run(cmd, check=True)
    path = os.path.join(dest, SDIST_NAME)
    if not os.path.exists(path):
        sys.exit(f"pip download did not produce {path}")
    return path


def read_members(sdist):
    """Stream the tarball once and return {key: bytes} for the members in MEMBERS."""
    wanted = {PREFIX + rel: key for key, rel in MEMBERS.items()}
    out = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for info in tar:
            key = wanted.get(info.name)
            if key is not None and info.isfile():
                out[key] = tar.extractfile(info).read()
    missing = sorted(set(MEMBERS) - set(out))
    if missing:
        sys.exit(f"{sdist}: members not found: {[MEMBERS[k] for k in missing]}")
    return out


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def extract_e2e(raw):
    examples = json.loads(raw)["examples"]
    assert len(examples) == 1000, len(examples)
    groups = {}  # MR -> references, in order of first appearance (dicts keep insertion order)
    for ex in examples:
        groups.setdefault(ex["input"], []).append(ex["target"])
    mrs = list(groups)
    assert len(mrs) == 213, len(mrs)
    order = mrs[:]
    random.Random(SEED).shuffle(order)
    n_test = round(E2E_TEST_FRACTION * len(mrs))
    test_set = set(order[:n_test])
    rows = {"train": [], "test": []}
    for k, mr in enumerate(mrs):
        split = "test" if mr in test_set else "train"
        rows[split].append({"id": f"e2e-mr-{k}", "mr": mr, "references": groups[mr]})
    return rows


def extract_mathqa(raw_q, raw_math, raw_lang):
    q = json.loads(raw_q)["examples"]
    math = json.loads(raw_math)["examples"]
    lang = json.loads(raw_lang)["examples"]
    assert len(q) == len(math) == len(lang) == 7688
    items = []
    for i, (eq, em, el) in enumerate(zip(q, math, lang)):
        question = eq["input"]
        # The hinted variants are "<question>\n<hint>" over the same problems in the same order.
        for other in (em, el):
            assert other["input"].split("\n", 1)[0] == question, i
            assert other["target_scores"] == eq["target_scores"], i
        scores = eq["target_scores"]
        if len(scores) != len(LETTERS):
            continue
        options = list(scores)  # dict order = the original MathQA option order a..e
        gold = [j for j, o in enumerate(options) if scores[o] == 1]
        assert len(gold) == 1, i
        items.append({
            "id": f"mathqa-{i}",
            "question": question,
            "options": options,
            "answer": LETTERS[gold[0]],
            "formula": em["input"].split("\n", 1)[1],
            "hint": el["input"].split("\n", 1)[1],
        })
    assert len(items) == 7500, len(items)
    random.Random(SEED).shuffle(items)
    test = sorted(items[:MATHQA_TEST], key=lambda r: int(r["id"].split("-")[1]))
    train = sorted(items[MATHQA_TEST:MATHQA_TEST + MATHQA_TRAIN], key=lambda r: int(r["id"].split("-")[1]))
    return {"train": train, "test": test}


def extract_xsum(raw):
    examples = json.loads(raw)["examples"]
    assert len(examples) == 1001, len(examples)
    rows = [{"id": ex["comment"], "document": ex["input"], "summary": ex["target"]}
            for ex in examples if len(ex["input"]) <= MAX_DOC_CHARS]
    random.Random(SEED).shuffle(rows)
    key = lambda r: int(r["id"].rsplit("-", 1)[1])
    return {"test": sorted(rows[:XSUM_TEST], key=key),
            "train": sorted(rows[XSUM_TEST:XSUM_TEST + XSUM_TRAIN], key=key)}


def extract_cnn_dm(raw):
    lines = raw.decode("utf-8").splitlines()
    # The file starts with two '#' canary comment lines, then one JSON object per line.
    records = [json.loads(l) for l in lines if l.strip() and not l.startswith("#")]
    assert len(records) == 150, len(records)
    rows = [{"id": r["idx"], "article": r["source"], "highlights": r["true_cnd"]} for r in records]
    order = list(range(len(rows)))
    random.Random(SEED).shuffle(order)
    test_idx, train_idx = sorted(order[:CNN_TEST]), sorted(order[CNN_TEST:CNN_TEST + CNN_TRAIN])
    return {"test": [rows[i] for i in test_idx], "train": [rows[i] for i in train_idx]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", help=f"path to {SDIST_NAME} (default: pip download into a temp dir)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"),
                    help="output folder (default: <repo>/data)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(tmp)
        digest = sha256_file(sdist)
        if digest != SDIST_SHA256:
            sys.exit(f"{sdist}: sha256 {digest} != expected {SDIST_SHA256}")
        raw = read_members(sdist)

    tasks = {
        "e2e_nlg": extract_e2e(raw["e2e"]),
        "mathqa": extract_mathqa(raw["mathqa_q"], raw["mathqa_math"], raw["mathqa_lang"]),
        "xsum": extract_xsum(raw["xsum"]),
        "cnn_dm": extract_cnn_dm(raw["cnn_dm"]),
    }
    out = os.path.normpath(args.out)
    manifest = {"source": f"PyPI sdist {SDIST_NAME}", "source_sha256": SDIST_SHA256, "seed": SEED,
                "files": {}}
    for task, splits in tasks.items():
        for split in ("train", "test"):
            rel = f"{task}/{split}.jsonl"
            path = os.path.join(out, rel)
            write_jsonl(path, splits[split])
            entry = {"lines": len(splits[split]), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
            if task == "e2e_nlg":
                entry["references"] = sum(len(r["references"]) for r in splits[split])
            manifest["files"][rel] = entry
            print(f"{rel}: {entry}")
    # Sanity: E2E train/test share no meaning representation.
    train_mrs = {r["mr"] for r in tasks["e2e_nlg"]["train"]}
    assert not train_mrs & {r["mr"] for r in tasks["e2e_nlg"]["test"]}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
