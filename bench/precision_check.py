#!/usr/bin/env python3
"""Serving precision against float32: runs `inspire-classifier predict` on the valid split (or
any JSON Lines file) with float32, --fp16 and --int8 recurrent weights (and --w8a8) and --batch 32 (papers
padded together), and reports for each the largest score difference to float32 one paper at a
time and how many decisions differ (issue #21: scores within 1e-3 and identical decisions on the
valid split).

  python3 bench/precision_check.py [--bin build/inspire-classifier] [-m MODEL]
      [--data ../shared/data/labeled/inspire_labeled.jsonl] [--split valid]

Standard library only. Exit code 1 when a decision differs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def predict(binary, model, path, flags):
    cmd = [binary, "predict", "-q", "-i", path]
    if model:
        cmd += ["-m", model]
    cmd += flags
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(root, "build", "inspire-classifier"))
    ap.add_argument("-m", "--model", default="", help="model bundle (default: the embedded one)")
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled",
                                                   "inspire_labeled.jsonl"))
    ap.add_argument("--split", default="valid", help="records of this split ('' = all)")
    ap.add_argument("--w8a8", action="store_true",
                    help="also --w8a8, one at a time and --batch 32 (needs AVX512-VNNI)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "in.jsonl")
        n = 0
        with open(a.data) as f, open(path, "w") as g:
            for line in f:
                r = json.loads(line)
                if a.split and r.get("split") != a.split:
                    continue
                g.write(json.dumps({"id": r["id"], "title": r["title"], "abstract": r["abstract"]}) + "\n")
                n += 1
        ref = predict(a.bin, a.model, path, [])
        assert len(ref) == n, f"float32 gave {len(ref)} predictions for {n} records"
        bad = 0
        print(f"{n} records ({a.split or 'all'}); against float32:")
        runs = [["--fp16"], ["--int8"], ["--batch", "32"]]
        if a.w8a8:
            runs += [["--w8a8"], ["--w8a8", "--batch", "32"]]
        for flags in runs:
            flag = " ".join(flags)
            got = predict(a.bin, a.model, path, flags)
            assert len(got) == n
            maxdiff = max(abs(x["scores"][k] - y["scores"][k]) for x, y in zip(ref, got) for k in x["scores"])
            diff = sum(x["prediction"] != y["prediction"] for x, y in zip(ref, got))
            bad += diff
            print(f"  {flag}: max |score difference| {maxdiff:.2e}, decisions that differ {diff}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
