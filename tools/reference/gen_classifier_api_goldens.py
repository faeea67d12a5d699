#!/usr/bin/env python3
"""End-to-end golden fixture for ulmfit::Classifier (title, abstract -> prediction, scores).

Writes tests/fixtures/classifier_api/tiny_classifier_golden.json. Run from the repo root:
    ../refenv/bin/python tools/reference/gen_classifier_api_goldens.py

What it does, exactly as INSPIRE's predict path (spec section 6), with fastai 2.7's own objects:
  * a tiny fastai text classifier, get_text_classifier(AWD_LSTM, V, 3, config=clas config with
    emb_sz=8, n_hid=12, n_layers=3, drop_mult=0.5, lin_ftrs=[6]), random weights (embedding,
    BatchNorm running statistics and affine parameters randomised so nothing is trivial), eval;
  * a vocab from fastai's make_vocab over a few training texts (min_freq=2, max_vocab=300), so
    real inputs have out-of-vocabulary tokens;
  * per paper: text = title + " <ENDTITLE> " + abstract; tokens = Tokenizer(SpacyTokenizer())(text)
    (fastai's predict path: rules -> spaCy, no replace_space); ids = Numericalize(vocab) (OOV -> 0);
    logits = model(ids[None])[0] (SentenceEncoder: 72-token chunks, last <= 1440 positions pooled);
    p = softmax(logits) (float32); scores = numpy float32 softmax(p / 0.25) as INSPIRE computes it;
    prediction = labels[argmax p].
The fixture holds the config, vocab, labels, every state_dict tensor (float32 values), and per
paper the ids, logits, probabilities, scores and prediction. The C++ test writes a bundle from it
with io::write_bundle and checks ulmfit::Classifier against every number.
"""
import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastai.text.core import SpacyTokenizer, Tokenizer  # noqa: E402
from fastai.text.data import make_vocab  # noqa: E402
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_clas_config  # noqa: E402
from fastai.text.models.core import get_text_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "labeled" / "inspire_labeled.jsonl"
OUT = ROOT / "tests" / "fixtures" / "classifier_api"
LABELS = ["rejected", "non_core", "core"]
TEMPERATURE = 0.25
E, H, NL, LIN = 8, 12, 3, [6]


def load_records():
    train, valid = [], []
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if "title" not in r or "abstract" not in r:
                continue
            if r["split"] == "train" and len(train) < 40:
                train.append(r)
            elif r["split"] == "valid" and len(valid) < 10:
                valid.append(r)
            if len(train) >= 40 and len(valid) >= 10:
                break
    return train, valid


def main():
    torch.manual_seed(1234)
    np.random.seed(1234)
    tok = Tokenizer(SpacyTokenizer())
    train, valid = load_records()

    counter = Counter()
    for r in train:
        counter.update(list(tok(r["title"] + " <ENDTITLE> " + r["abstract"])))
    itos = make_vocab(counter, min_freq=2, max_vocab=300)
    stoi = {w: i for i, w in enumerate(itos)}  # Numericalize(vocab=itos): last index wins

    cfg = dict(awd_lstm_clas_config)
    cfg.update(emb_sz=E, n_hid=H, n_layers=NL)
    model = get_text_classifier(AWD_LSTM, len(itos), len(LABELS), config=cfg, drop_mult=0.5,
                                lin_ftrs=LIN)
    with torch.no_grad():
        enc = model[0].module
        enc.encoder.weight.normal_(0, 0.6)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.num_batches_tracked.fill_(7)
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)
        for name, prm in enc.rnns.named_parameters():
            prm.normal_(0, 0.7)
    model.eval()

    papers = [(r["title"], r["abstract"], r["id"]) for r in valid]
    long_abs = " ".join(r["abstract"] for r in train[:12])  # > 1440 tokens: max_len truncation
    papers += [
        ("", "", "edge:empty"),
        ("Résumé of ΛCDM — naïve QCD at √s = 13 TeV", "Ünïcödé &amp; HTML &lt;b&gt; entities.", "edge:unicode"),
        ("THE ALL CAPS TITLE", "Repeated!!!!!! words words words words and\n newlines\n\n here", "edge:rules"),
        ("A long paper", long_abs, "edge:long"),
        ("Zyxwvut qqq unknownword", "Nothing here is in the vocabulary: flibbertigibbet.", "edge:oov"),
    ]

    def ids_of(title, abstract):
        return [stoi.get(t, 0) for t in tok(title + " <ENDTITLE> " + abstract)]

    # Like a trained model: BatchNorm running statistics = the statistics of its inputs (here
    # over these papers), so small differences between papers become different predictions.
    for blk in model[1].layers:
        bn, seen = blk[0], []
        h = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
        with torch.no_grad():
            for title, abstract, _ in papers:
                model(torch.tensor([ids_of(title, abstract)], dtype=torch.long))
        h.remove()
        x = torch.cat(seen)
        with torch.no_grad():
            bn.running_mean.copy_(x.mean(0))
            bn.running_var.copy_(x.var(0) + 1e-3)

    records = []
    for title, abstract, pid in papers:
        text = title + " <ENDTITLE> " + abstract
        toks = list(tok(text))
        ids = [stoi.get(t, 0) for t in toks]
        with torch.no_grad():
            logits = model(torch.tensor([ids], dtype=torch.long))[0][0]
        p = torch.softmax(logits, dim=-1)
        pn = np.array(p.tolist(), dtype=np.float32)  # exact: float32 -> double -> float32
        e = np.exp(pn / np.float32(TEMPERATURE))
        s = e / np.sum(e)
        records.append({
            "id": pid, "title": title, "abstract": abstract, "n_tokens": len(toks),
            "ids": ids,
            "logits": [float(x) for x in logits.tolist()],
            "probabilities": [float(x) for x in pn.tolist()],
            "scores": [float(x) for x in s.tolist()],
            "prediction": LABELS[int(np.argmax(pn))],
            "inspire_output": {"prediction": LABELS[int(np.argmax(s))],
                               "scores": {LABELS[i]: float(s[i]) for i in range(3)}},
        })

    tensors = {}
    for k, v in model.state_dict().items():
        if v.dtype == torch.long:
            tensors[k] = {"dtype": "I64", "shape": list(v.shape), "data": [int(x) for x in v.reshape(-1).tolist()]}
        else:
            tensors[k] = {"dtype": "F32", "shape": list(v.shape),
                          "data": [float(x) for x in v.float().reshape(-1).tolist()]}

    out = {
        "generator": "tools/reference/gen_classifier_api_goldens.py",
        "fastai": __import__("fastai").__version__, "torch": torch.__version__,
        "config": {"kind": "classifier", "vocab_size": len(itos), "emb_sz": E, "n_hid": H,
                   "n_layers": NL, "pad_idx": 1, "bptt": 72, "max_len": 72 * 20,
                   "lin_ftrs": LIN, "n_classes": len(LABELS)},
        "vocab": itos, "labels": LABELS, "temperature": TEMPERATURE,
        "tensors": tensors, "records": records,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "tiny_classifier_golden.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, vocab {len(itos)}, "
          f"{len(records)} papers, longest {max(r['n_tokens'] for r in records)} tokens)",
          file=sys.stderr)
    print("predictions:", Counter(r["prediction"] for r in records), file=sys.stderr)


if __name__ == "__main__":
    main()
