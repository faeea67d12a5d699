#!/usr/bin/env python3
"""Pooled [last, max, mean] vectors of EVERY layer of a forward AWD-LSTM LM bundle (issue #22).

ULMFiT's head, and `inspire-classifier embed`, read only the encoder's last layer. This numpy
re-implementation of the encoder's eval forward (no dropout) writes one vector file per layer,
in `embed`'s format, so that tools/reference/cv_features.py can probe whether the middle layers
know more of what the labels need (docs/cross-validation.md, "Which layer?"). The last layer's
file equals `embed`'s output to ~1e-6 for every paper of at most max_len (1,440) tokens whose
record has no separate "text" field (embed joins title and abstract).

Usage: layer_vectors.py LM.safetensors tokens.jsonl OUT_PREFIX
  tokens.jsonl: `inspire-classifier tokenize -m predict -i inspire_labeled.jsonl -o tokens.jsonl`
  writes OUT_PREFIX-l0.jsonl, OUT_PREFIX-l1.jsonl, ... (one per layer)
Needs numpy. About 10 minutes for the 4,862 labeled papers with the medium LM on one core.
"""
import json, os, struct, sys
import numpy as np

lm_path, tok_path, prefix = sys.argv[1:4]
with open(lm_path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
    base = 8 + n
    raw = f.read()
meta = hdr.pop("__metadata__")
cfg = json.loads(meta["config"])
itos = json.loads(meta["vocab"])
stoi = {s: i for i, s in enumerate(itos)}


def T(name):
    h = hdr[name]
    if h["dtype"] != "F32":
        sys.exit("%s: tensor %s is %s; this script reads float32 bundles" % (lm_path, name, h["dtype"]))
    a, b = h["data_offsets"]
    return np.frombuffer(raw[a:b], dtype=np.float32).reshape(h["shape"])


emb = T("0.encoder.weight")
layers = []
for l in range(cfg["n_layers"]):
    p = "0.rnns.%d." % l
    layers.append((T(p + "module.weight_ih_l0"), T(p + "weight_hh_l0_raw"),
                   T(p + "module.bias_ih_l0") + T(p + "module.bias_hh_l0")))
if cfg.get("backwards", False):
    sys.exit("%s: a backward LM; this script reads forward ones" % lm_path)

docs = []
with open(tok_path) as f:
    for line in f:
        j = json.loads(line)
        docs.append((j.get("id"), [stoi.get(t, 0) for t in j["tokens"]]))


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


order = sorted(range(len(docs)), key=lambda i: -len(docs[i][1]))
B = 128
res = [[None] * len(docs) for _ in layers]
for g0 in range(0, len(order), B):
    grp = order[g0:g0 + B]
    L = max(len(docs[i][1]) for i in grp)
    lens = np.array([len(docs[i][1]) for i in grp])
    ids = np.full((len(grp), L), cfg["pad_idx"], dtype=np.int64)
    for r, i in enumerate(grp):
        ids[r, :lens[r]] = docs[i][1]
    mask = (np.arange(L)[None, :] < lens[:, None])  # [b, L]
    x = emb[ids]  # [b, L, E]
    for l, (wih, whh, bias) in enumerate(layers):
        H = whh.shape[1]
        xi = x @ wih.T + bias  # [b, L, 4H]
        h = np.zeros((len(grp), H), np.float32)
        c = np.zeros((len(grp), H), np.float32)
        y = np.zeros((len(grp), L, H), np.float32)
        for t in range(L):
            g = xi[:, t] + h @ whh.T
            i_, f_, g_, o_ = np.split(g, 4, axis=1)
            c = sig(f_) * c + sig(i_) * np.tanh(g_)
            h = sig(o_) * np.tanh(c)
            y[:, t] = h
        m = mask[:, :, None]
        last = y[np.arange(len(grp)), lens - 1]
        mx = np.where(m, y, -np.inf).max(axis=1)
        mean = (y * m).sum(axis=1) / lens[:, None]
        feats = np.concatenate([last, mx, mean], axis=1)
        for r, i in enumerate(grp):
            res[l][i] = feats[r]
        x = y
    print("%d/%d" % (min(g0 + B, len(order)), len(order)), file=sys.stderr, flush=True)
for l in range(len(layers)):  # each file whole or not at all: a temp file, then a rename
    path = "%s-l%d.jsonl" % (prefix, l)
    with open(path + ".tmp", "w") as out:
        for i, (did, _) in enumerate(docs):
            out.write(json.dumps({"id": did, "vector": [round(float(v), 7) for v in res[l][i]]}) + "\n")
    os.replace(path + ".tmp", path)
