#!/usr/bin/env python3
"""Cross-checks a bundle written by `inspire-classifier import-fastai --weights W --itos I
[--target-vocab T]` against what fastai 2.7 itself makes of the same files (match_embeds +
clean_raw_keys), tensor by tensor. Reads the safetensors file by hand (no safetensors package;
torch only: the reference env's torch 1.13 cannot use its numpy 2).

    ../refenv/bin/python tools/reference/check_import_vs_fastai.py W I [T] BUNDLE
"""
import json
import pickle
import struct
import sys
import warnings

import torch

warnings.filterwarnings("ignore")
from fastai.text.learner import clean_raw_keys, match_embeds  # noqa: E402

args = sys.argv[1:]
weights, itos_path, bundle = args[0], args[1], args[-1]
target_path = args[2] if len(args) == 4 else None
wgts = torch.load(weights, map_location="cpu")
if "model" in wgts:
    wgts = wgts["model"]
old_vocab = pickle.load(open(itos_path, "rb"))
if target_path:
    wgts = match_embeds(wgts, old_vocab, pickle.load(open(target_path, "rb")))
wgts = clean_raw_keys(wgts)

raw = open(bundle, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
aliases = json.loads(meta.get("aliases", "{}"))
data = raw[8 + n:]
worst = 0.0
for k, t in wgts.items():
    name = aliases.get(k, k)
    h = header[name]
    b, e = h["data_offsets"]
    dt = {"F32": torch.float32, "I64": torch.int64}[h["dtype"]]
    ours = (torch.frombuffer(bytearray(data[b:e]), dtype=dt) if e > b
            else torch.zeros(0, dtype=dt)).reshape(h["shape"])
    ref = t.detach()
    assert list(ours.shape) == list(ref.shape), (k, ours.shape, ref.shape)
    diff = float((ours.double() - ref.double()).abs().max()) if ref.numel() else 0.0
    exact = bool(torch.equal(ours, ref))
    worst = max(worst, diff)
    print(f"{k:40s} {str(list(ref.shape)):14s} {'bit-exact' if exact else f'max |diff| {diff:.3g}'}")
print(f"{len(wgts)} tensors checked; worst max |diff| = {worst:.3g}")
sys.exit(0 if worst < 1e-6 else 1)
