#!/usr/bin/env python3
"""Writes the small PyTorch/fastai checkpoint fixtures for tests/test_torch_file.cpp and
tests/test_pickle.cpp into tests/fixtures/torch/.

Run from the repository root with the reference environment (torch 1.13, fastai 2.7.19,
spaCy 3.8.7, pandas):

    ../refenv/bin/python tools/reference/gen_torch_fixtures.py

Every tensor file X.pt gets X.values.json: for each state-dict entry, in order, its dtype,
shape and values (logical row-major order, as float64/int; JSON floats are shortest
round-trip reprs, so the C++ test compares bit-exactly).
"""
import io
import json
import os
import pickle
import random
import subprocess  # noqa: F401  (hostile fixtures reference it by name only)
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "torch"
DATA = ROOT.parent / "shared" / "data" / "labeled" / "inspire_labeled.jsonl"
MARKER = "/tmp/inspire_pickle_hostile_marker"

torch.manual_seed(0)
random.seed(0)
np.random.seed(0)

DT = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
      torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32",
      torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}


def dump_values(sd, path):
    out = []
    for k, t in sd.items():
        flat = t.detach().contiguous().reshape(-1)
        if t.dtype.is_floating_point:
            vals = [float(x) for x in flat.double().tolist()]
        else:
            vals = [int(x) for x in flat.long().tolist()]
        out.append({"name": k, "dtype": DT[t.dtype], "shape": list(t.shape),
                    "stride": list(t.stride()), "offset": t.storage_offset(), "values": vals})
    path.write_text(json.dumps({"tensors": out}))


def save_both(sd, stem, values=True):
    torch.save(sd, OUT / f"{stem}_zip.pt")
    torch.save(sd, OUT / f"{stem}_legacy.pt", _use_new_zipfile_serialization=False)
    if values:
        dump_values(sd, OUT / f"{stem}.values.json")


def tiny_texts(n):
    rows = [json.loads(l) for l in DATA.open()]
    # the fixture split has no "rejected" paper: add a few so that all 3 classes exist
    rows = ([r for r in rows if r["split"] == "fixture"][:n - 6]
            + [r for r in rows if r["label"] == "rejected"][:6])
    random.Random(0).shuffle(rows)
    df = pd.DataFrame({
        "text": [r["title"] + " <ENDTITLE> " + " ".join(r["abstract"].split()[:30]) for r in rows],
        "label": [{"rejected": 0, "non_core": 1, "core": 2}[r["label"]] for r in rows],
    })
    df["is_valid"] = [i % 5 == 0 for i in range(len(df))]
    return df


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    from fastai.text.all import (AWD_LSTM, TextBlock, DataBlock, ColReader, ColSplitter,
                                 TextDataLoaders, language_model_learner,
                                 text_classifier_learner, awd_lstm_lm_config,
                                 awd_lstm_clas_config)
    df = tiny_texts(60)
    # ---- tiny LM (real fastai AWD-LSTM, tiny config) ----
    lm_dls = DataBlock(blocks=TextBlock.from_df("text", is_lm=True, seq_len=12, max_vocab=32, min_freq=2),
                       get_x=ColReader("text"), splitter=ColSplitter("is_valid")).dataloaders(df, bs=4)
    vocab = list(lm_dls.vocab)
    cfg = dict(awd_lstm_lm_config, emb_sz=8, n_hid=12, n_layers=3)
    lm = language_model_learner(lm_dls, AWD_LSTM, config=cfg, pretrained=False, drop_mult=0.7)
    with torch.no_grad():  # make every tensor distinct and non-trivial
        for p in lm.model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    lm_sd = lm.model.state_dict()
    save_both(lm_sd, "lm")
    # fastai-v1 style: module.weight_hh_l0 duplicates placed after weight_ih_l0 (legacy format).
    v1 = OrderedDict()
    for k, t in lm_sd.items():
        v1[k] = t
        if k.endswith(".module.weight_ih_l0"):
            raw = k.replace(".module.weight_ih_l0", ".weight_hh_l0_raw")
            v1[k.replace("weight_ih_l0", "weight_hh_l0")] = lm_sd[raw].clone() * 0.5  # "dropped" copy
    torch.save(v1, OUT / "lm_v1_legacy.pt", _use_new_zipfile_serialization=False)
    dump_values(v1, OUT / "lm_v1.values.json")
    # encoder only (INSPIRE's finetuned_language_model_encoder.h5: keys without "0.")
    enc_sd = lm.model[0].state_dict()
    torch.save(enc_sd, OUT / "encoder.h5")
    dump_values(enc_sd, OUT / "encoder.values.json")
    # {'model': ..., 'opt': ...} wrapper as fastai's save_model writes it
    lm.create_opt()
    torch.save({"model": lm_sd, "opt": lm.opt.state_dict()}, OUT / "lm_wrapped.pth")
    # ---- vocab pickles ----
    with open(OUT / "itos_p2.pkl", "wb") as f:
        pickle.dump(vocab, f, protocol=2)
    with open(OUT / "itos_p4.pkl", "wb") as f:
        pickle.dump(vocab, f, protocol=4)
    pd.to_pickle(vocab, OUT / "itos_pd.pkl")  # protocol 5, memo refs for repeated xxfake
    with open(OUT / "itos_p0.pkl", "wb") as f:
        pickle.dump(vocab, f, protocol=0)
    (OUT / "itos.json").write_text(json.dumps(vocab))
    # ---- tiny classifier Learner, exported like INSPIRE (torch.save of the whole Learner) ----
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_col="is_valid",
                                  bs=8, text_vocab=vocab, seq_len=12)
    ccfg = dict(awd_lstm_clas_config, emb_sz=8, n_hid=12, n_layers=3)
    learn = text_classifier_learner(dls, AWD_LSTM, config=ccfg, drop_mult=0.5, pretrained=False)
    learn.model[0].module.load_state_dict(enc_sd)
    learn.fit_one_cycle(1, 1e-2)  # BN running stats become non-trivial
    learn.export(OUT.resolve() / "classifier.h5")
    learn.model.eval()
    csd = learn.model.state_dict()
    dump_values(csd, OUT / "classifier.values.json")
    texts = [df.text[1], df.text[2], "Measurement of the top quark mass <ENDTITLE> We measure the mass."]
    preds = []
    for t in texts:
        _, _, probs = learn.predict(t)
        preds.append({"text": t, "probs": [float(x) for x in probs.double().tolist()]})
    (OUT / "classifier.predictions.json").write_text(json.dumps({
        "vocab_len": len(vocab), "classes": [str(c) for c in learn.dls.vocab[1]],
        "predictions": preds}, indent=1))
    # ---- strided / offset / dtype zoo (views share one storage) ----
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10) * 0.37 - 3.1
    zoo = OrderedDict()
    zoo["base"] = base
    zoo["transposed"] = base.t()
    zoo["sliced"] = base[2:5, 3:8]
    zoo["offset_vec"] = base.view(-1)[7:19]
    zoo["step"] = base[:, ::3]
    zoo["half"] = (base * 0.1).half()
    zoo["half_t"] = zoo["half"].t()
    zoo["bf16"] = base.bfloat16()
    zoo["f64"] = base.double() / 3
    zoo["i64"] = torch.arange(-3, 5)
    zoo["i32"] = torch.arange(-2, 2, dtype=torch.int32)
    zoo["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    zoo["boolt"] = torch.tensor([True, False, True])
    zoo["scalar"] = torch.tensor(3.25)
    zoo["num_batches_tracked"] = torch.tensor(7)
    zoo["empty"] = torch.zeros(0, 3)
    zoo["expanded"] = torch.tensor([1.5, 2.5]).reshape(2, 1).expand(2, 3)  # stride 0
    save_both(zoo, "zoo")
    # ---- hostile pickles (must never run) ----
    class Evil:
        def __init__(self, fn, arg):
            self.fn, self.arg = fn, arg

        def __reduce__(self):
            return (self.fn, (self.arg,))

    cmd = f"touch {MARKER}"
    for proto in (0, 2, 4):
        with open(OUT / f"hostile_os_system_p{proto}.pkl", "wb") as f:
            pickle.dump([1, Evil(os.system, cmd)], f, protocol=proto)
    with open(OUT / "hostile_eval.pkl", "wb") as f:
        pickle.dump({"a": Evil(eval, f"__import__('os').system('{cmd}')")}, f, protocol=2)
    import subprocess as sp
    with open(OUT / "hostile_subprocess.pkl", "wb") as f:
        pickle.dump(Evil(sp.check_call, ["touch", MARKER]), f, protocol=4)
    # hand-written: getattr(__import__('os'), 'system')('touch ...')
    raw = (b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(X\x02\x00\x00\x00ostRX\x06\x00\x00\x00systemtR"
           + b"(X" + len(cmd).to_bytes(4, "little") + cmd.encode() + b"tR.")
    (OUT / "hostile_getattr.pkl").write_bytes(raw)
    torch.save(OrderedDict(w=torch.ones(2), evil=Evil(os.system, cmd)), OUT / "hostile_zip.pt")
    if os.path.exists(MARKER):
        os.remove(MARKER)
    print("fixtures written to", OUT)
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:9d} {p.name}")


if __name__ == "__main__":
    main()
