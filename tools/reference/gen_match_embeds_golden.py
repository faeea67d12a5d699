#!/usr/bin/env python3
"""Golden for `import-fastai --target-vocab` (ulmfit/fastai_import.h): what fastai 2.7's
`LMLearner.load_pretrained` does to a pretrained LM when the fine-tuning vocab differs.

Inputs (committed by tools/reference/gen_torch_fixtures.py):
  tests/fixtures/torch/lm_v1_legacy.pt   tiny AWD-LSTM LM (V_old=40, emb 8, hid 12, 3 layers),
                                         legacy format, with fastai-v1 `module.weight_hh_l0` copies
  tests/fixtures/torch/itos_p4.pkl       its vocab (ends with 8 x "xxfake": duplicates)
Outputs (tests/fixtures/bundle/):
  target_itos.pkl                        a new vocab: specials, old tokens reordered, unknown
                                         words, "xxfake" (duplicated in the old vocab) and a
                                         duplicated new token
  match_embeds_golden.json               the model state_dict after fastai's own
                                         match_embeds + clean_raw_keys + load_ignore_keys into a
                                         fresh get_language_model(AWD_LSTM, V_new) — i.e. exactly
                                         load_pretrained without a DataLoaders

Run from the repository root with the reference environment:
    ../refenv/bin/python tools/reference/gen_match_embeds_golden.py
"""
import json
import pickle
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "tests" / "fixtures" / "torch"
OUT = ROOT / "tests" / "fixtures" / "bundle"


def main():
    from fastai.text.all import AWD_LSTM, awd_lstm_lm_config, get_language_model
    from fastai.text.learner import clean_raw_keys, load_ignore_keys, match_embeds

    OUT.mkdir(parents=True, exist_ok=True)
    with open(SRC / "itos_p4.pkl", "rb") as f:
        old_vocab = pickle.load(f)
    assert old_vocab.count("xxfake") > 1
    specials = old_vocab[:9]
    old_words = [w for w in old_vocab[9:] if w != "xxfake"]
    new_vocab = (specials + list(reversed(old_words[:12])) +
                 ["boson", "lattice", "the", "hadron", "xxfake", "neutrino", "boson", "quark"])
    while len(new_vocab) % 8:
        new_vocab.append("xxfake")
    with open(OUT / "target_itos.pkl", "wb") as f:
        pickle.dump(new_vocab, f, protocol=4)

    wgts = torch.load(SRC / "lm_v1_legacy.pt", map_location="cpu")
    if "model" in wgts:
        wgts = wgts["model"]
    wgts = match_embeds(wgts, old_vocab, new_vocab)
    wgts = clean_raw_keys(wgts)
    cfg = dict(awd_lstm_lm_config, emb_sz=8, n_hid=12, n_layers=3)
    torch.manual_seed(0)
    model = get_language_model(AWD_LSTM, len(new_vocab), config=cfg)
    load_ignore_keys(model, wgts)
    sd = model.state_dict()
    tensors = []
    for k, t in sd.items():
        tensors.append({"name": k, "shape": list(t.shape),
                        "values": [float(x) for x in t.detach().reshape(-1).double().tolist()]})
    old_o2i = {w: i for i, w in enumerate(old_vocab)}
    matched = sum(1 for w in new_vocab if w in old_o2i)
    (OUT / "match_embeds_golden.json").write_text(json.dumps(
        {"old_vocab": old_vocab, "new_vocab": new_vocab, "matched": matched,
         "xxfake_old_index": old_o2i["xxfake"], "tensors": tensors}))
    print("wrote", OUT / "target_itos.pkl", OUT / "match_embeds_golden.json",
          f"(V_new={len(new_vocab)}, matched={matched})")


if __name__ == "__main__":
    main()
