#!/usr/bin/env python3
"""fastText with the same prior correction as `inspire-classifier calibrate` (the fair peer of a
calibrated model): for each grid point, train on split=="train", read class probabilities on
split=="valid" (`fasttext predict-prob`), choose the non_core weight w (p_non_core * w vs p_core,
log grid [1/4, 4], 121 points, ties to the weight nearest 1) that maximises valid macro-F1, and
also estimate it honestly by K-fold cross-validation over the valid records (fold = index % K,
weights fit on the other folds), exactly as `calibrate --folds K` does. The grid point is
selected by its calibrated in-sample valid macro-F1 (the most favourable choice for fastText).

Usage: python3 tools/reference/fasttext_calibrated.py [--data ...] [--out tools/reference/out/ft_cal]
"""
import argparse, itertools, json, math, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fasttext_baseline import metrics, write_split  # noqa: E402


def probs(model, path):
    out = subprocess.run(["fasttext", "predict-prob", model, path, "3"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    res = []
    for line in out:
        t = line.split()
        d = {t[i].replace("__label__", ""): float(t[i + 1]) for i in range(0, len(t), 2)}
        res.append(d)
    return res


def decide(p, w):
    return "non_core" if p.get("non_core", 0.0) * w > p.get("core", 0.0) else "core"


def fit(P, gold, idx):
    best_w, best = 1.0, None
    for s in range(-60, 61):
        w = math.exp(math.log(4.0) * s / 60)
        f = metrics([gold[i] for i in idx], [decide(P[i], w) for i in idx])["macro_f1"]
        if best is None or f > best + 1e-12 or (abs(f - best) <= 1e-12 and abs(math.log(w)) < abs(math.log(best_w))):
            best, best_w = f, w
    return best_w


def cv(P, gold, k):
    pooled = [None] * len(P)
    for f in range(k):
        train = [i for i in range(len(P)) if i % k != f]
        w = fit(P, gold, train)
        for i in range(len(P)):
            if i % k == f:
                pooled[i] = decide(P[i], w)
    return metrics(gold, pooled)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled", "inspire_labeled.jsonl"))
    ap.add_argument("--out", default=os.path.join(here, "out", "ft_cal"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = [json.loads(l) for l in open(a.data)]
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "valid")}
    paths = {s: os.path.join(a.out, s + ".txt") for s in split}
    for s in split:
        write_split(split[s], paths[s])
    gold = [r["label"] for r in split["valid"]]
    grid = dict(lr=[0.1, 0.25, 0.5], epoch=[10, 25, 50], wordNgrams=[1, 2, 3], dim=[100])
    best = None
    for lr, ep, ng, dim in itertools.product(*grid.values()):
        model = os.path.join(a.out, "m")
        subprocess.run(["fasttext", "supervised", "-input", paths["train"], "-output", model, "-lr", str(lr),
                        "-epoch", str(ep), "-wordNgrams", str(ng), "-dim", str(dim), "-thread", "1",
                        "-seed", "0", "-minCount", "1", "-bucket", "200000", "-verbose", "0"], check=True)
        P = probs(model + ".bin", paths["valid"])
        raw = metrics(gold, [decide(p, 1.0) for p in P])
        w = fit(P, gold, list(range(len(P))))
        cal = metrics(gold, [decide(p, w) for p in P])
        r = {"params": dict(lr=lr, epoch=ep, wordNgrams=ng, dim=dim), "raw_macro_f1": raw["macro_f1"],
             "raw_accuracy": raw["accuracy"], "weight_non_core": w, "macro_f1": cal["macro_f1"],
             "accuracy": cal["accuracy"], "cv2_macro_f1": cv(P, gold, 2)["macro_f1"],
             "cv5_macro_f1": cv(P, gold, 5)["macro_f1"]}
        print(json.dumps(r), flush=True)
        if best is None or r["macro_f1"] > best["macro_f1"]:
            best = r
    json.dump({"selected_on": "calibrated valid macro-F1", "best": best, "grid": grid},
              open(os.path.join(a.out, "report.json"), "w"), indent=1)
    print("best:", json.dumps(best))


if __name__ == "__main__":
    main()
