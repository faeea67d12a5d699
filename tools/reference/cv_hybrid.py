#!/usr/bin/env python3
"""Would our recipe help a linear peer? Averages, fold by fold, the core probability of one of
`inspire-classifier cv`'s members (its probs.json, computed on the scored fold) with that of
TF-IDF (1-2 grams) + logistic regression trained on the same four folds, and scores all three
on the folds of cv_peers.py (issue #22).

  python3 tools/reference/cv_hybrid.py CV_DIR [--member 0 [--member 1 ...]] [--C 16]

With several --member (e.g. a forward and a backward model), "ours" is their ensemble: the mean
of their core probabilities, as `cv` and `ensemble` average them.

The logistic regression's settings are fixed in advance (C=16, no class weights), not chosen
on any fold, so nothing here is tuned on the scored papers; its own figure is printed beside the
others. With --inner they are cv_peers.py's instead: C in {1, 4, 16, 64} x class weights
{none, balanced} chosen by an inner 3-fold CV on macro-F1 within the four training folds (the
peer as its own table scores it). The averaging weight is fixed (1/2). Needs scikit-learn.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cv_peers import choose, make_folds, scores, sk_contender  # noqa: E402
from fasttext_baseline import norm, text_of  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cv_dir", help="the -o folder of `inspire-classifier cv`")
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled", "inspire_labeled.jsonl"))
    ap.add_argument("--member", type=int, action="append", help="member(s) of CV_DIR (default 0)")
    ap.add_argument("--C", type=float, default=16.0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--inner", action="store_true",
                    help="choose the LR's C and class weights by an inner CV (cv_peers.py's grid)")
    a = ap.parse_args()
    members = a.member or [0]
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
        ours = [0.0] * len(te)
        for m_ in members:
            P = json.load(open(os.path.join(a.cv_dir, f"fold-{k}", f"member-{m_}", "probs.json")))
            if len(P) != len(te):
                sys.exit(f"fold {k}: {len(P)} probabilities for {len(te)} papers (other folds?)")
            # [rejected, non_core, core] -> P(core | not rejected), averaged over the members
            ours = [o + p[2] / (p[1] + p[2]) / len(members) for o, p in zip(ours, P)]
        gold = [labels[i] for i in te]
        C, cw = a.C, None
        if a.inner:
            fit, grid = sk_contender("lr")
            p = choose(fit, grid, [texts[i] for i in tr], [labels[i] for i in tr])
            C, cw = p["C"], p["cw"]
            print(f"fold {k}: inner CV chose C={C}, class_weight={cw}", flush=True)
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        X = vec.fit_transform([texts[i] for i in tr])
        m = LogisticRegression(C=C, class_weight=cw, max_iter=2000).fit(X, [labels[i] for i in tr])
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
