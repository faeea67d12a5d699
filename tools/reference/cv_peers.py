#!/usr/bin/env python3
"""K-fold cross-validation of the linear peers on train + valid (issue #22's honest protocol).

Folds (the same for every contender; `--write-folds` writes them for other tools):
  * the records of split "train" and "valid" of inspire_labeled.jsonl (fixture/test never);
  * a paper that exists as several records (`dup_group`) is one unit, so copies never straddle
    a train/test boundary; its key is the dup_group, else the record's id;
  * units are stratified by label: within each label, units are ordered by FNV-1a 64 of their
    key (ties by key) and dealt round-robin, fold = rank % K. No RNG: any tool can rebuild them.

Contenders (each fold: fit on the other K-1 folds, score the held-out fold; hyper-parameters are
chosen INSIDE the training folds by an inner 3-fold CV on macro-F1, never on the scored fold):
  * tfidf-lr   : TF-IDF (word 1-2 grams, sublinear tf, min_df 2) + logistic regression,
                 C in {1, 4, 16, 64} x class_weight {none, balanced}
  * tfidf-svm  : the same features + linear SVM, C in {0.1, 0.3, 1, 3} x class_weight {none, balanced}
  * fasttext   : Debian's `fasttext supervised` (one thread, deterministic), lr {0.1, 0.25, 0.5}
                 x epoch {25, 50} x wordNgrams {1, 2}, dim 100 (fastText's score moves a lot with
                 lr: on fold 0, lr 0.1 / 0.25 / 0.5 at 25 epochs, bigrams gave 0.559 / 0.678 / 0.589) (skipped with a note if the binary is
                 missing: `apt-get install fasttext`)
Text = title + " <ENDTITLE> " + abstract, lowercased, punctuation split off (as
fasttext_baseline.py). Reports mean +- sample std over the folds of accuracy and macro-F1 (over
the classes present: core, non_core), and per-class F1.

Usage: python3 tools/reference/cv_peers.py [--data ../shared/data/labeled/inspire_labeled.jsonl]
           [--folds 5] [--only tfidf-lr,tfidf-svm,fasttext] [--write-folds F.jsonl] [--json OUT]
Needs scikit-learn (`pip install scikit-learn`).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fasttext_baseline import norm, text_of  # noqa: E402

CLASSES = ["non_core", "core"]


def fnv1a64(s):
    h = 0xcbf29ce484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def make_folds(rows, k):
    """fold index per row (rows: train+valid records)."""
    unit_label, unit_rows = {}, {}
    for i, r in enumerate(rows):
        key = r.get("dup_group") or r["id"]
        unit_label.setdefault(key, r["label"])
        unit_rows.setdefault(key, []).append(i)
    fold = [None] * len(rows)
    for label in sorted(set(unit_label.values())):
        keys = sorted((u for u in unit_label if unit_label[u] == label), key=lambda u: (fnv1a64(u), u))
        for rank, u in enumerate(keys):
            for i in unit_rows[u]:
                fold[i] = rank % k
    return fold


def scores(gold, pred):
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1 = {}
    for c in CLASSES:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        f1[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"accuracy": acc, "macro_f1": sum(f1.values()) / len(f1), "f1": f1}


# ---- contenders: fit(texts, labels, params) -> predict(texts) ------------------------------

def sk_contender(kind):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    def fit(texts, labels, p):
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        X = vec.fit_transform(texts)
        if kind == "lr":
            m = LogisticRegression(C=p["C"], class_weight=p["cw"], max_iter=2000)
        else:
            m = LinearSVC(C=p["C"], class_weight=p["cw"])
        m.fit(X, labels)
        return lambda t: list(m.predict(vec.transform(t)))

    Cs = [1, 4, 16, 64] if kind == "lr" else [0.1, 0.3, 1, 3]
    grid = [{"C": c, "cw": cw} for c in Cs for cw in (None, "balanced")]
    return fit, grid


def ft_contender(workdir):
    def fit(texts, labels, p):
        d = tempfile.mkdtemp(dir=workdir)
        tr = os.path.join(d, "train.txt")
        with open(tr, "w") as f:
            for t, l in zip(texts, labels):
                f.write("__label__%s %s\n" % (l, t))
        model = os.path.join(d, "m")
        subprocess.run(["fasttext", "supervised", "-input", tr, "-output", model, "-lr", str(p["lr"]),
                        "-epoch", str(p["epoch"]), "-wordNgrams", str(p["ng"]), "-dim", "100",
                        "-thread", "1", "-seed", "0", "-verbose", "0"], check=True)

        def predict(t):
            te = os.path.join(d, "test.txt")
            with open(te, "w") as f:
                f.write("\n".join(t) + "\n")
            out = subprocess.run(["fasttext", "predict", model + ".bin", te], capture_output=True,
                                 text=True, check=True).stdout.split()
            # One prediction per fit: free the model now (about 800 MB with bigrams; the 185
            # fits of a run would otherwise fill the disk).
            shutil.rmtree(d, ignore_errors=True)
            return [o.replace("__label__", "") for o in out]
        return predict

    grid = [{"lr": lr, "epoch": ep, "ng": ng} for lr in (0.1, 0.25, 0.5) for ep in (25, 50) for ng in (1, 2)]
    return fit, grid


def choose(fit, grid, texts, labels, inner_k=3):
    """The grid point with the best mean macro-F1 over an inner stratified k-fold of (texts, labels)."""
    idx_by_label = {}
    for i, l in enumerate(labels):
        idx_by_label.setdefault(l, []).append(i)
    inner = [None] * len(labels)
    for l, idx in idx_by_label.items():
        for r, i in enumerate(idx):
            inner[i] = r % inner_k
    best, best_p = None, None
    for p in grid:
        f = []
        for j in range(inner_k):
            tr = [i for i in range(len(labels)) if inner[i] != j]
            te = [i for i in range(len(labels)) if inner[i] == j]
            pred = fit([texts[i] for i in tr], [labels[i] for i in tr], p)([texts[i] for i in te])
            f.append(scores([labels[i] for i in te], pred)["macro_f1"])
        m = sum(f) / len(f)
        if best is None or m > best:
            best, best_p = m, p
    return best_p


def summary(per_fold):
    out = {}
    for key in ("accuracy", "macro_f1"):
        v = [s[key] for s in per_fold]
        out[key] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
    for c in CLASSES:
        v = [s["f1"][c] for s in per_fold]
        out["f1_" + c] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
    return out


def report(name, per_fold, chosen, t0, width=10):
    """Prints a contender's summary line; returns its results entry."""
    s = summary(per_fold)
    print("%-*s acc %.4f +- %.4f   macro-F1 %.4f +- %.4f   F1 non_core %.4f  core %.4f   (%.0f s)" % (
        width, name, s["accuracy"][0], s["accuracy"][1], s["macro_f1"][0], s["macro_f1"][1],
        s["f1_non_core"][0], s["f1_core"][0], time.time() - t0), flush=True)
    return {"summary": s, "per_fold": per_fold, "chosen": chosen}


def write_json(path, results):
    """`results` to `path` atomically (a temp file, then a rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(path + ".tmp", path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled", "inspire_labeled.jsonl"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only", default="tfidf-lr,tfidf-svm,fasttext")
    ap.add_argument("--write-folds", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.data)]
    rows = [r for r in rows if r.get("split") in ("train", "valid")]
    fold = make_folds(rows, a.folds)
    if a.write_folds:
        with open(a.write_folds + ".tmp", "w") as f:
            for r, k in zip(rows, fold):
                f.write(json.dumps({"id": r["id"], "fold": k}) + "\n")
        os.replace(a.write_folds + ".tmp", a.write_folds)
    texts = [norm(text_of(r)) for r in rows]
    labels = [r["label"] for r in rows]
    sizes = [sum(1 for k in fold if k == j) for j in range(a.folds)]
    print("records %d, folds %s" % (len(rows), sizes), flush=True)

    workdir = tempfile.mkdtemp(prefix="cv_peers_")
    results = {}
    try:
        for name in a.only.split(","):
            if name == "fasttext" and not shutil.which("fasttext"):
                print("fasttext: binary not found, skipped (apt-get install fasttext)")
                continue
            fit, grid = {"tfidf-lr": lambda: sk_contender("lr"), "tfidf-svm": lambda: sk_contender("svm"),
                         "fasttext": lambda: ft_contender(workdir)}[name]()
            t0, per_fold, chosen = time.time(), [], []
            for j in range(a.folds):
                tr = [i for i in range(len(rows)) if fold[i] != j]
                te = [i for i in range(len(rows)) if fold[i] == j]
                p = choose(fit, grid, [texts[i] for i in tr], [labels[i] for i in tr])
                pred = fit([texts[i] for i in tr], [labels[i] for i in tr], p)([texts[i] for i in te])
                per_fold.append(scores([labels[i] for i in te], pred))
                chosen.append(p)
            results[name] = report(name, per_fold, chosen, t0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if a.json:
        write_json(a.json, results)


if __name__ == "__main__":
    main()
