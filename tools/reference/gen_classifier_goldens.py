#!/usr/bin/env python3
"""Write tests/fixtures/classifier/tiny_classifier.json: fastai's real text classifier on tiny
sizes, forward + backward, in float64.

Model: fastai.text.models.core.get_text_classifier(AWD_LSTM, vocab_sz=11, n_class=3,
seq_len=4, max_len=12, config=tiny (emb 6, hid 7, 3 layers), drop_mult=0 (every dropout off),
lin_ftrs=[5], ps=[0.0]) — so SentenceEncoder runs chunks of 4 tokens and keeps the last 12
positions. BatchNorm weights/biases and running stats are randomised so they matter.

Batches are padded with fastai's own pad_input_chunk (pad_first, seq_len=4), sorted longest
first, with documents longer than several chunks (some longer than max_len) and front-padded
rows. For each batch the file records:
  * train mode (BN batch statistics): logits, mean cross-entropy loss for the given targets,
    the gradient of every parameter, and the BN running stats after the forward;
  * eval mode (BN running stats): logits;
and for every document on its own (batch of 1, no padding, eval): logits — the serving path.

Usage: ../refenv/bin/python tools/reference/gen_classifier_goldens.py [out.json]
"""
import json
import os
import sys

import torch
from fastai.text.models.awdlstm import AWD_LSTM, WeightDropout
from fastai.text.models.core import get_text_classifier
from fastai.text.data import pad_input_chunk
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    here, "..", "..", "tests", "fixtures", "classifier", "tiny_classifier.json")

torch.set_default_dtype(torch.float64)
torch.manual_seed(1)
V, SEQ, MAXLEN, PAD = 11, 4, 12, 1
config = dict(emb_sz=6, n_hid=7, n_layers=3, pad_token=PAD, bidir=False,
              output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
model = get_text_classifier(AWD_LSTM, V, 3, seq_len=SEQ, config=config, drop_mult=0.0,
                            lin_ftrs=[5], ps=[0.0], pad_idx=PAD, max_len=MAXLEN)
# Randomise the BatchNorm affine parameters and running stats so that they matter.
with torch.no_grad():
    for name, t in model.state_dict().items():
        if ".0.weight" in name and name.startswith("1.layers"):
            t.uniform_(0.5, 1.5)
        elif ".0.bias" in name and name.startswith("1.layers"):
            t.uniform_(-0.3, 0.3)
        elif name.endswith("running_mean"):
            t.uniform_(-0.2, 0.2)
        elif name.endswith("running_var"):
            t.uniform_(0.5, 2.0)

state0 = {k: v.detach().clone() for k, v in model.state_dict().items()}


def rand_doc(n):
    ids = torch.randint(2, V, (n,))
    ids[0] = 2  # xxbos-like first token
    # sprinkle the unknown token (id 0) in, never the pad id
    ids[torch.rand(n) < 0.15] = 0
    return ids


# (lengths, targets): sorted descending as SortedDL delivers them
batches_spec = [
    ([15, 10, 6], [2, 0, 1]),        # sl 15: chunk 0 dropped by max_len; rows 1, 2 front-padded
    ([9, 9, 5, 2], [1, 1, 0, 2]),    # equal lengths; a 2-token doc (front pad 4 + end pad 3)
    ([30, 25, 13], [0, 2, 1]),       # long: 8 chunks, only the last 3 kept
]

docs = []
batches = []
# fastai's CrossEntropyLossFlat is nn.CrossEntropyLoss (mean) on the flattened [bs, n_class]
# logits; we call F.cross_entropy directly because the fastai wrapper loses float64 precision here
# (its loss differs from the exact float64 cross-entropy of its own logits by ~1e-7 relative).
def loss_fn(logits, y):
    return F.cross_entropy(logits, y)


for lens, targets in batches_spec:
    ds = [rand_doc(n) for n in lens]
    first = len(docs)
    docs.extend(ds)
    samples = [(d, torch.tensor(t)) for d, t in zip(ds, targets)]
    padded = pad_input_chunk(samples, pad_idx=PAD, pad_first=True, seq_len=SEQ)
    x = torch.stack([p[0] for p in padded])
    y = torch.tensor(targets)

    # train mode: BN batch statistics (running stats updated) — start from the same state
    model.load_state_dict(state0, strict=False)
    model.train()
    # torch 1.13's F.dropout(p=0) returns its input (the raw Parameter itself), which makes
    # fastai's WeightDropout register it as a parameter of the LSTM and crash on the next reset.
    # With p = 0 the eval branch (raw_w.clone()) is the same function, so use it.
    for m in model.modules():
        if isinstance(m, WeightDropout):
            m.eval()
    model.zero_grad()
    logits = model(x)[0]
    loss = loss_fn(logits, y)
    loss.backward()
    grads = {n: (None if p.grad is None else p.grad.detach().flatten().tolist())
             for n, p in model.named_parameters()}
    running = {k: v.detach().flatten().tolist() for k, v in model.state_dict().items()
               if "running" in k}
    train_logits = logits.detach().tolist()

    model.load_state_dict(state0, strict=False)
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)[0].tolist()

    batches.append({"docs": list(range(first, first + len(ds))), "ids": x.tolist(),
                    "targets": targets, "train_logits": train_logits, "train_loss": loss.item(),
                    "grads": grads, "running_after": running, "eval_logits": eval_logits})

model.load_state_dict(state0, strict=False)
model.eval()
single = []
with torch.no_grad():
    for d in docs:
        single.append(model(d[None])[0][0].tolist())

out = {
    "generator": "tools/reference/gen_classifier_goldens.py",
    "fastai_version": __import__("fastai").__version__,
    "torch_version": torch.__version__,
    "config": {"vocab": V, "emb": 6, "hidden": 7, "n_layers": 3, "pad": PAD, "bptt": SEQ,
               "max_len": MAXLEN, "lin_ftrs": [5], "head_ps": [0.0, 0.0], "n_classes": 3},
    "state_dict": {k: {"shape": list(v.shape), "values": v.flatten().tolist()}
                   for k, v in state0.items() if not k.endswith("num_batches_tracked")},
    "param_names": [n for n, _ in model.named_parameters()],
    "docs": [d.tolist() for d in docs],
    "single_eval_logits": single,
    "batches": batches,
}
os.makedirs(os.path.dirname(out_path), exist_ok=True)
with open(out_path, "w") as f:
    json.dump(out, f)
print(f"wrote {out_path}: {len(docs)} docs, {len(batches)} batches, "
      f"{len(out['state_dict'])} tensors")
