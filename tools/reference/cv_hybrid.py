#!/usr/bin/env python3
"""Would our recipe help a linear peer? Averages, fold by fold, the core probability of one of
`inspire-classifier cv`'s members (its probs.json, computed on the scored fold) with that of
TF-IDF (1-2 grams) + logistic regression trained on the same four folds, and scores all three
on the folds of cv_peers.py (issue #22).

  python3 tools/reference/cv_hybrid.py CV_DIR [--member 0] [--C 16]

The logistic regression's settings are fixed in advance (C=16, no class weights), not chosen
on any fold, so nothing here is tuned on the scored papers; its own figure is printed beside the
others (cv_peers.py chooses C and class weights by an inner CV and scores a little higher).
The averaging weight is fixed too (1/2). Needs scikit-learn.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cv_peers import make_folds, scores  # noqa: E402
from fasttext_baseline import norm, text_of  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cv_dir", help="the -o folder of `inspire-classifier cv`")
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled", "inspire_labeled.jsonl"))
    ap.add_argument("--member", type=int, default=0)
    ap.add_argument("--C", type=float, default=16.0)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rows = [json.loads(line) for line in open(a.data)]
    rows = [r for r in rows if r["split"] in ("train", "valid")]
    fold = make_folds(rows, a.folds)
    texts = [norm(text_of(r)) for r in rows]
    labels = [r["label"] for r in rows]
    res = {"ours": [], "tfidf-lr": [], "mean": []}
    for k in range(a.folds):
        tr = [i for i in range(len(rows)) if fold[i] != k]
        te = [i for i in range(len(rows)) if fold[i] == k]
        P = json.load(open(os.path.join(a.cv_dir, f"fold-{k}", f"member-{a.member}", "probs.json")))
        if len(P) != len(te):
            sys.exit(f"fold {k}: {len(P)} probabilities for {len(te)} papers (other folds?)")
        gold = [labels[i] for i in te]
        ours = [p[2] / (p[1] + p[2]) for p in P]  # [rejected, non_core, core] -> P(core | not rejected)
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        X = vec.fit_transform([texts[i] for i in tr])
        m = LogisticRegression(C=a.C, max_iter=2000).fit(X, [labels[i] for i in tr])
        lr = m.predict_proba(vec.transform([texts[i] for i in te]))[:, list(m.classes_).index("core")]
        for name, pc in (("ours", ours), ("tfidf-lr", lr), ("mean", [(x + y) / 2 for x, y in zip(ours, lr)])):
            res[name].append(scores(gold, ["core" if x >= 0.5 else "non_core" for x in pc]))
        print(f"fold {k}: " + ", ".join(f"{n} {res[n][-1]['macro_f1']:.3f}" for n in res), flush=True)
    print(f"{'contender':10} accuracy         macro-F1")
    for n, v in res.items():
        acc = [s["accuracy"] for s in v]
        f1 = [s["macro_f1"] for s in v]
        print(f"{n:10} {statistics.mean(acc):.3f} +- {statistics.stdev(acc):.3f}  "
              f"{statistics.mean(f1):.3f} +- {statistics.stdev(f1):.3f}")


if __name__ == "__main__":
    main()
