#!/usr/bin/env python3
"""Do a language model's document vectors help a linear model? K-fold CV (issue #22).

The vectors come from `inspire-classifier embed -m LM.safetensors -i inspire_labeled.jsonl`
(one JSON line per record, in the data file's order): [last, max, mean] of the encoder's last
layer, from a language model that never saw a label, so using them on any fold is fair. With
several files (e.g. a forward and a backward LM) they are concatenated.

Contenders, on cv_peers.py's folds, with hyper-parameters chosen by an inner 3-fold CV on
macro-F1 inside the training folds (never on the scored fold), as cv_peers.py does:
  * vec-lr       : the vectors, standardized on the training part, + logistic regression,
                   C in {0.01, 0.1, 1} x class_weight {none, balanced}
  * tfidf+vec-lr : cv_peers.py's TF-IDF features beside the standardized vectors scaled by
                   a / sqrt(dim) (so the block has norm about a, as each TF-IDF row has norm 1),
                   + logistic regression, C in {4, 16, 64} x class_weight {none, balanced} x a in {0.5, 1, 2}
  * tfidf+vec-svm: the same features + linear SVM, C in {0.1, 0.3, 1} x class_weight x a
The peers alone (tfidf-lr 0.770 +- 0.018, tfidf-svm 0.781 +- 0.015 macro-F1) are cv_peers.py's
table (docs/cross-validation.md).

Usage: python3 tools/reference/cv_features.py VECTORS.jsonl [VECTORS2.jsonl ...]
           [--data ../shared/data/labeled/inspire_labeled.jsonl] [--only vec-lr,tfidf+vec-lr]
           [--json OUT]
Needs scikit-learn and numpy.
"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cv_peers import choose, make_folds, report, scores, write_json  # noqa: E402
from fasttext_baseline import norm, text_of  # noqa: E402


def read_vectors(paths, all_rows):
    """One matrix [len(all_rows), sum of dims], checked against the data file's ids and order."""
    import numpy as np
    blocks = []
    for p in paths:
        vecs = []
        with open(p) as f:
            for n, line in enumerate(f):
                j = json.loads(line)
                if n >= len(all_rows) or j.get("id") != all_rows[n].get("id"):
                    sys.exit("%s:%d: id %r where the data file has %r (embed the same file, all of it)"
                             % (p, n + 1, j.get("id"), all_rows[n].get("id") if n < len(all_rows) else None))
                vecs.append(j["vector"])
        if len(vecs) != len(all_rows):
            sys.exit("%s: %d vectors for %d records" % (p, len(vecs), len(all_rows)))
        blocks.append(np.asarray(vecs, dtype=np.float64))
    return np.hstack(blocks)


def contender(kind, X, texts):
    """fit(indices, labels, params) -> predict(indices), over rows of X / texts."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    def fit(idx, labels, p):
        sc = StandardScaler().fit(X[idx])
        scale = p.get("a", 1.0) / np.sqrt(X.shape[1])
        if kind == "vec-lr":
            feats = lambda ii: sc.transform(X[ii])
        else:
            vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
            vec.fit([texts[i] for i in idx])
            feats = lambda ii: sp.hstack([vec.transform([texts[i] for i in ii]),
                                          sp.csr_matrix(sc.transform(X[ii]) * scale)]).tocsr()
        if kind.endswith("svm"):
            m = LinearSVC(C=p["C"], class_weight=p["cw"])
        else:
            m = LogisticRegression(C=p["C"], class_weight=p["cw"], max_iter=3000)
        m.fit(feats(idx), labels)
        return lambda ii: list(m.predict(feats(ii)))

    cws = (None, "balanced")
    if kind == "vec-lr":
        grid = [{"C": c, "cw": cw} for c in (0.01, 0.1, 1) for cw in cws]
    else:
        Cs = (4, 16, 64) if kind == "tfidf+vec-lr" else (0.1, 0.3, 1)
        grid = [{"C": c, "cw": cw, "a": a} for c in Cs for cw in cws for a in (0.5, 1, 2)]
    return fit, grid


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("vectors", nargs="+", help="`inspire-classifier embed` outputs of --data")
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled", "inspire_labeled.jsonl"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only", default="vec-lr,tfidf+vec-lr")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    all_rows = [json.loads(l) for l in open(a.data)]
    X_all = read_vectors(a.vectors, all_rows)
    keep = [i for i, r in enumerate(all_rows) if r.get("split") in ("train", "valid")]
    rows = [all_rows[i] for i in keep]
    X = X_all[keep]
    fold = make_folds(rows, a.folds)
    texts = [norm(text_of(r)) for r in rows]
    labels = [r["label"] for r in rows]
    print("records %d, vector dim %d" % (len(rows), X.shape[1]), flush=True)
    results = {}
    for name in a.only.split(","):
        fit, grid = contender(name, X, texts)
        t0, per_fold, chosen = time.time(), [], []
        for j in range(a.folds):
            tr = [i for i in range(len(rows)) if fold[i] != j]
            te = [i for i in range(len(rows)) if fold[i] == j]
            # choose() hands fit the items it splits: here the row indices themselves
            p = choose(fit, grid, tr, [labels[i] for i in tr])
            pred = fit(tr, [labels[i] for i in tr], p)(te)
            per_fold.append(scores([labels[i] for i in te], pred))
            chosen.append(p)
            print("  %s fold %d: macro-F1 %.4f (chose %s)" % (name, j, per_fold[-1]["macro_f1"], p), flush=True)
        results[name] = report(name, per_fold, chosen, t0, width=14)
    if a.json:
        write_json(a.json, results)


if __name__ == "__main__":
    main()
