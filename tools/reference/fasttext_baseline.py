#!/usr/bin/env python3
"""fastText baseline on the INSPIRE labeled set (the peer for issue #5's accuracy target).

Protocol (the same one our model gets): train on split=="train", select hyper-parameters on
split=="valid" by macro-F1, report accuracy / macro-F1 on valid, and the confusion matrix on the
3-class `fixture` split. Text = title + " <ENDTITLE> " + abstract (or `text`), lowercased, with
punctuation split off (fastText has no tokenizer of its own). Uses the Debian `fasttext` binary,
one thread, fixed seed (-thread 1 makes fastText deterministic).

Usage: python3 tools/reference/fasttext_baseline.py [--data ../shared/data/labeled/inspire_labeled.jsonl]
                                                    [--out tools/reference/out/fasttext] [--quick]
"""
import argparse, itertools, json, os, re, subprocess, sys, time

LABELS = ["rejected", "non_core", "core"]


def text_of(r):
    if r.get("text"):
        return r["text"]
    if not r.get("title"):
        return r.get("abstract", "")
    return r["title"] + " <ENDTITLE> " + r["abstract"]


def norm(s):
    s = s.lower()
    s = re.sub(r"([^\w\s])", r" \1 ", s)
    return " ".join(s.split())


def write_split(rows, path):
    with open(path, "w") as f:
        for r in rows:
            f.write("__label__%s %s\n" % (r["label"], norm(text_of(r))))


def metrics(gold, pred):
    present = [l for l in LABELS if l in gold]
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = {}
    for l in present:
        tp = sum(g == l and p == l for g, p in zip(gold, pred))
        fp = sum(g != l and p == l for g, p in zip(gold, pred))
        fn = sum(g == l and p != l for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s[l] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    macro = sum(f1s.values()) / len(f1s)
    cm = [[sum(g == a and p == b for g, p in zip(gold, pred)) for b in LABELS] for a in LABELS]
    return {"accuracy": acc, "macro_f1": macro, "per_class_f1": f1s, "confusion_matrix": cm,
            "labels": LABELS}


def predict(model, path):
    out = subprocess.run(["fasttext", "predict", model, path], capture_output=True, text=True,
                         check=True).stdout.split()
    return [o.replace("__label__", "") for o in out]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "labeled",
                                                   "inspire_labeled.jsonl"))
    ap.add_argument("--out", default=os.path.join(here, "out", "fasttext"))
    ap.add_argument("--quick", action="store_true", help="small grid")
    ap.add_argument("--lrs", default="", help="comma-separated learning rates (part of the grid, "
                    "e.g. to run the grid in two processes)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = [json.loads(l) for l in open(a.data)]
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "valid", "fixture")}
    paths = {s: os.path.join(a.out, s + ".txt") for s in split}
    for s in split:
        write_split(split[s], paths[s])
    gold = {s: [r["label"] for r in split[s]] for s in split}

    grid = dict(lr=[0.05, 0.1, 0.25, 0.5, 1.0], epoch=[5, 10, 25, 50], wordNgrams=[1, 2, 3],
                dim=[50, 100])
    if a.quick:
        grid = dict(lr=[0.1, 0.5], epoch=[10, 25], wordNgrams=[1, 2], dim=[100])
    if a.lrs:
        grid["lr"] = [float(x) for x in a.lrs.split(",")]
    best = None
    t0 = time.time()
    for lr, ep, ng, dim in itertools.product(*grid.values()):
        model = os.path.join(a.out, "m")
        subprocess.run(["fasttext", "supervised", "-input", paths["train"], "-output", model,
                        "-lr", str(lr), "-epoch", str(ep), "-wordNgrams", str(ng), "-dim",
                        str(dim), "-thread", "1", "-seed", "0", "-minCount", "1", "-bucket",
                        "200000", "-verbose", "0"], check=True)
        m = metrics(gold["valid"], predict(model + ".bin", paths["valid"]))
        print(f"lr={lr} epoch={ep} wordNgrams={ng} dim={dim}: valid acc={m['accuracy']:.4f} "
              f"macroF1={m['macro_f1']:.4f}", flush=True)
        if best is None or m["macro_f1"] > best[0]["macro_f1"]:
            best = (m, dict(lr=lr, epoch=ep, wordNgrams=ng, dim=dim))
            os.replace(model + ".bin", os.path.join(a.out, "best.bin"))
    m, params = best
    fx = metrics(gold["fixture"], predict(os.path.join(a.out, "best.bin"), paths["fixture"]))
    report = {"selected_on": "valid macro-F1", "params": params, "valid": m, "fixture": fx,
              "grid": grid, "seconds": time.time() - t0}
    json.dump(report, open(os.path.join(a.out, "report.json"), "w"), indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
