#!/usr/bin/env python
"""Golden fixtures for ulmfit/vocab.h and ulmfit/data.h, written by the real fastai 2.7.19.

Run from the repository root with the reference environment:

    ../refenv/bin/python tools/reference/gen_vocab_data_goldens.py

Reads the first records of ../shared/data/labeled/inspire_labeled.jsonl (split "train"),
tokenizes them with fastai's own training path (tokenize_df: rules + spaCy + replace_space), and
writes to tests/fixtures/data/:

  docs.jsonl            one JSON array of fastai tokens per document (the C++ tests feed these
                        token lists to Vocab, so they do not depend on our tokenizer)
  vocab_goldens.json    make_vocab / Numericalize results for several (docs, min_freq, max_vocab)
  lm_goldens.json       LMDataLoader(shuffle=False) batches (x, y) for a few (docs, bs, seq_len)
  tokenize_cli.jsonl    inputs for `inspire-classifier tokenize` with fastai's predict-path
                        (Tokenizer on a str) and training-path (tokenize_df) tokens
  clas_goldens.json     SortedDL + Pad_Chunk validation batches, and SortedDL.shuffle_fn training
                        orders together with the numpy permutations it drew (so that C++ can
                        replay the layout given the same random draws)
"""
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.text.all import (LMDataLoader, Numericalize, Pad_Chunk, SortedDL, SpacyTokenizer,
                             TensorText, Tokenizer, make_vocab, tokenize_df)
from fastai.torch_core import TensorCategory

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "labeled" / "inspire_labeled.jsonl"
OUT = ROOT / "tests" / "fixtures" / "data"
N_DOCS = 240


def load_texts(n):
    texts = []
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("split") != "train":
                continue
            texts.append(r["title"] + " <ENDTITLE> " + r["abstract"])
            if len(texts) == n:
                break
    return texts


def replay_train_order(lengths, bs, perm, batch_perm):
    """SortedDL.shuffle_fn written out with the random draws given (what C++ implements)."""
    idxs = list(perm)
    imax = int(np.argmax(lengths))
    p = idxs.index(imax)
    idxs[0], idxs[p] = idxs[p], idxs[0]
    sz = bs * 50
    out = []
    for i in range(0, len(idxs), sz):
        out += sorted(idxs[i:i + sz], key=lambda k: lengths[k], reverse=True)
    batches = [out[i:i + bs] for i in range(0, len(out), bs)]
    if len(batches) <= 2:
        return [k for b in batches for k in b]
    mid = [batches[1 + j] for j in batch_perm]
    return [k for b in [batches[0]] + mid + [batches[-1]] for k in b]


def dump(obj, name):
    with open(OUT / name, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    texts = load_texts(N_DOCS)
    df = pd.DataFrame({"text": texts})
    res, _ = tokenize_df(df, "text", n_workers=1, tok=SpacyTokenizer("en"))
    docs = [list(t) for t in res["text"]]
    with open(OUT / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")

    # ---- vocab -------------------------------------------------------------------------------
    class _Dsets:  # what Numericalize.setups reads: a Counter of the training tokens
        def __init__(self, counter):
            self.counter = counter

    cases = []
    for n_build, min_freq, max_vocab in [(200, 2, 500), (200, 2, 60000), (240, 3, 60000),
                                         (40, 2, 1000), (200, 1, 1000), (200, 2, 311),
                                         (200, 2, 312)]:
        counter = Counter(t for d in docs[:n_build] for t in d)
        vocab = make_vocab(counter, min_freq=min_freq, max_vocab=max_vocab)
        num = Numericalize(min_freq=min_freq, max_vocab=max_vocab)
        num.setups(_Dsets(counter))
        assert list(num.vocab) == vocab
        ids = [num(d).tolist() for d in docs]  # docs past n_build contain OOV tokens -> 0
        cases.append({"n_build": n_build, "min_freq": min_freq, "max_vocab": max_vocab,
                      "vocab": vocab, "ids": ids})
    dump({"cases": cases}, "vocab_goldens.json")

    # numericalised docs used below: vocab of the first 200 docs, min_freq 2, max_vocab 60000
    ids_all = cases[1]["ids"]

    # ---- LM stream ---------------------------------------------------------------------------
    lm = []
    for n_docs, bs, seq_len in [(20, 8, 30), (7, 5, 17), (3, 2, 1000), (60, 64, 100)]:
        dset = [TensorText(torch.tensor(d)) for d in ids_all[:n_docs]]
        dl = LMDataLoader(dset, bs=bs, seq_len=seq_len, shuffle=False)
        batches = [{"x": x.tolist(), "y": y.tolist()} for x, y in dl]
        lm.append({"n_docs": n_docs, "bs": bs, "seq_len": seq_len, "batches": batches})
    dump({"cases": lm}, "lm_goldens.json")

    # ---- classifier batches ------------------------------------------------------------------
    clas = {"valid": [], "train": []}
    labels = [i % 3 for i in range(len(ids_all))]
    for n_docs, bs, seq_len in [(30, 8, 72), (45, 16, 72), (13, 4, 20)]:
        dset = [(TensorText(torch.tensor(d)), TensorCategory(labels[i]))
                for i, d in enumerate(ids_all[:n_docs])]
        dl = SortedDL(dset, bs=bs, shuffle=False, drop_last=False,
                      before_batch=Pad_Chunk(pad_idx=1, seq_len=seq_len))
        order = [int(i) for i in dl.get_idxs()]
        batches = [{"x": x.tolist(), "y": y.tolist()} for x, y in dl]
        clas["valid"].append({"n_docs": n_docs, "bs": bs, "seq_len": seq_len, "order": order,
                              "batches": batches})
    for n_docs, bs, seed in [(240, 4, 0), (240, 2, 1), (100, 8, 2), (9, 4, 3), (5, 4, 4)]:
        dset = [(TensorText(torch.tensor(d)), TensorCategory(labels[i]))
                for i, d in enumerate(ids_all[:n_docs])]
        dl = SortedDL(dset, bs=bs, shuffle=True, drop_last=True)
        np.random.seed(seed)
        order = [int(i) for i in dl.shuffle_fn(list(range(n_docs)))]
        np.random.seed(seed)  # replay the same draws so that C++ can use them
        perm = np.random.permutation(n_docs).tolist()
        n_batches = (n_docs + bs - 1) // bs
        batch_perm = np.random.permutation(n_batches - 2).tolist() if n_batches > 2 else []
        assert replay_train_order([len(d) for d in ids_all[:n_docs]], bs, perm, batch_perm) == order
        clas["train"].append({"n_docs": n_docs, "bs": bs, "lengths": [len(d) for d in ids_all[:n_docs]],
                              "perm": perm, "batch_perm": batch_perm, "order": order})
    dump(clas, "clas_goldens.json")

    # ---- tokenize CLI ------------------------------------------------------------------------
    inputs = []
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("split") == "valid" and len(inputs) < 4:
                inputs.append({"id": r["id"], "title": r["title"], "abstract": r["abstract"]})
    inputs.append({"id": 17, "text": "Hello\n world: THE Higgs boson!!!! at   13 TeV"})
    inputs.append({"text": "Caf\u00e9 na\u00efve \u2014 \u03b1 \u2192 \u03b2\u03b3 &amp; <br /> x"})
    inputs.append({"title": "", "abstract": "Only an abstract."})
    tok = Tokenizer(SpacyTokenizer("en"))
    with open(OUT / "tokenize_cli.jsonl", "w", encoding="utf-8") as f:
        for inp in inputs:
            text = inp["text"] if "text" in inp else inp["title"] + " <ENDTITLE> " + inp["abstract"]
            predict = list(tok(text))
            res, _ = tokenize_df(pd.DataFrame({"text": [text]}), "text", n_workers=1,
                                 tok=SpacyTokenizer("en"))
            train = list(res["text"][0])
            f.write(json.dumps({"input": inp, "predict": predict, "train": train},
                               ensure_ascii=False) + "\n")
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
