#!/usr/bin/env python3
"""Golden fixtures for ulmfit/awd_lstm: fastai 2.7's real AWD_LSTM + tied LinearDecoder.

Writes tests/fixtures/awd_lm/awd_lm_golden.json. Run from the repo root:
    ../refenv/bin/python tools/reference/gen_awd_lm_goldens.py

Tiny config (V=17, E=6, H=8, 3 layers, pad 1), computed in float64, training mode, two
consecutive batches (bs=2, sl=5) so that the carried, detached hidden state is checked.
Dropout is ON with every probability non-zero, but the masks are made deterministic: fastai's
`dropout_mask` (EmbeddingDropout, RNNDropout) and `WeightDropout._setweights` are replaced by
versions that draw from a fixed torch.Generator, and every mask is recorded in the fixture in
the order fastai draws it (embed [V], input [bs,E], then per layer weight [4h,h] and, except the
last layer, hidden [bs,h], then output [bs,E]). The C++ test feeds the same masks.

A second scenario ("nodrop") runs the same model with every probability 0 (plain train mode).
Per batch: ids, targets, the masks, the logits, the loss (mean CE, as CrossEntropyLossFlat), the
last layer output, the final hidden states, and the gradient of every parameter (zeroed before
each batch). Parameters are the initial ones (recorded once), keys as fastai's state_dict.
"""
import json
import os
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import fastai.text.models.awdlstm as awd  # noqa: E402
from fastai.text.models.awdlstm import AWD_LSTM  # noqa: E402
from fastai.text.models.core import LinearDecoder, SequentialRNN  # noqa: E402

V, E, H, NL, BS, SL = 17, 6, 8, 3, 2, 5
PS = dict(embed_p=0.2, input_p=0.2, weight_p=0.3, hidden_p=0.25, output_p=0.15)

GEN = torch.Generator().manual_seed(99)
LOG = []


def det_dropout_mask(x, sz, p):
    m = (torch.rand(*sz, generator=GEN, dtype=torch.double) >= p).to(x.dtype) / (1 - p)
    LOG.append(m)
    return m


def det_setweights(self):
    for layer in self.layer_names:
        raw_w = getattr(self, f"{layer}_raw")
        if self.training:
            m = (torch.rand(*raw_w.shape, generator=GEN, dtype=torch.double) >= self.weight_p).to(raw_w.dtype) / (1 - self.weight_p)
            LOG.append(m)
            w = raw_w * m
        else:
            w = raw_w.clone()
        setattr(self.module, layer, w)


def t2j(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def build(ps):
    torch.manual_seed(1234)
    enc = AWD_LSTM(V, E, H, NL, pad_token=1, hidden_p=ps["hidden_p"], input_p=ps["input_p"],
                   embed_p=ps["embed_p"], weight_p=ps["weight_p"])
    dec = LinearDecoder(V, E, output_p=ps["output_p"], tie_encoder=enc.encoder, bias=True)
    model = SequentialRNN(enc, dec).double()
    with torch.no_grad():
        dec.decoder.bias.uniform_(-0.2, 0.2)  # non-zero, to exercise the bias path
    model.reset()
    model.train()
    return model


def run(model, batches, with_masks):
    out = {"params": {}, "batches": []}
    for k, v in model.state_dict().items():
        out["params"][k] = t2j(v)
    for ids, tgt in batches:
        LOG.clear()
        model.zero_grad()
        logits, raw, dp = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
        loss.backward()
        b = {"ids": ids.reshape(-1).tolist(), "targets": tgt.reshape(-1).tolist(),
             "loss": float(loss), "logits": t2j(logits), "enc_out": t2j(raw),
             "hidden": [[t2j(h.squeeze(0)), t2j(c.squeeze(0))] for h, c in model[0].hidden],
             "grads": {}}
        for k, p in model.named_parameters():
            b["grads"][k] = t2j(p.grad if p.grad is not None else torch.zeros_like(p))
        if with_masks:
            # order of draws: embed, input, (weight_l, hidden_l)*, weight_last, output
            assert len(LOG) == 2 + NL + (NL - 1) + 1, len(LOG)
            it = iter(LOG)
            masks = {"embed": t2j(next(it).reshape(V)), "input": t2j(next(it).reshape(BS, E)),
                     "weight": [], "hidden": []}
            for l in range(NL):
                masks["weight"].append(t2j(next(it)))
                if l < NL - 1:
                    masks["hidden"].append(t2j(next(it).reshape(BS, -1)))
            masks["output"] = t2j(next(it).reshape(BS, E))
            b["masks"] = masks
        out["batches"].append(b)
    return out


def main():
    awd.dropout_mask = det_dropout_mask
    awd.WeightDropout._setweights = det_setweights
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(2):
        ids = torch.randint(0, V, (BS, SL), generator=g)
        ids[0, 1] = 1  # a pad token: its embedding row gets no gradient from the lookup
        tgt = torch.randint(0, V, (BS, SL), generator=g)
        batches.append((ids, tgt))
    res = {"config": {"vocab": V, "emb": E, "hidden": H, "n_layers": NL, "bs": BS, "sl": SL,
                      "pad_token": 1, **PS, "torch": torch.__version__}}
    res["drop"] = run(build(PS), batches, True)
    res["nodrop"] = run(build({k: 0.0 for k in PS}), batches, False)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    path = os.path.join(root, "tests", "fixtures", "awd_lm", "awd_lm_golden.json")
    with open(path, "w") as f:
        json.dump(res, f)
    print("wrote", os.path.normpath(path), "loss drop", [b["loss"] for b in res["drop"]["batches"]],
          "nodrop", [b["loss"] for b in res["nodrop"]["batches"]])


if __name__ == "__main__":
    main()
