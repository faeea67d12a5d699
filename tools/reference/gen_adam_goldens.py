#!/usr/bin/env python3
"""Write tests/fixtures/optim/adam_one_cycle.json: fastai's real Adam + fit_one_cycle, step by step.

A tiny model (Linear(5,4) -> ReLU -> Linear(4,3), both with bias) is split into 2 parameter
groups and trained by a real fastai `Learner` on fixed synthetic data (no shuffling):

  stage 1: learn.freeze()   (group 0 frozen, Adam state cleared)
           fit_one_cycle(1, slice(2e-2), wd=[0.3, 0.0])   -> lrs [2e-3, 2e-2], 3 iterations
  stage 2: learn.unfreeze() (Adam state cleared)
           fit_one_cycle(2, slice(1e-3, 3e-2), wd=[0.3, 0.0]) -> lrs [1e-3, 3e-2], 2 x 3 iterations

Weight decay is large (0.3) in group 0 and off in group 1; the Linear biases have do_wd=False
(fastai's wd_bn_bias=False rule), so every branch of the optimizer is exercised.

For every optimizer step the file records: stage, pct_train (the schedule position), the
hyper-parameters fastai set for each group (lr, mom, sqr_mom, eps, wd), the gradient of every
parameter that had one (others are null: never-trained parameters), and every parameter's value
after the step. The C++ test replays the gradients through nn::Adam + nn::OneCycle.

Usage: ../refenv/bin/python tools/reference/gen_adam_goldens.py [out.json]
"""
import json
import os
import sys

import torch
from torch import nn
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.callback.schedule import *  # noqa: F401,F403  (patches fit_one_cycle onto Learner)
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam
from fastai.torch_core import params

here = os.path.dirname(os.path.abspath(__file__))
out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    here, "..", "..", "tests", "fixtures", "optim", "adam_one_cycle.json")

torch.manual_seed(0)
N, BS = 12, 4
x = torch.randn(N, 5)
y = torch.randint(0, 3, (N,))
train = [(x[i], y[i]) for i in range(N)]
valid = train[:4]
dls = DataLoaders(DataLoader(train, bs=BS, shuffle=False, drop_last=True),
                  DataLoader(valid, bs=BS, shuffle=False), device="cpu")

model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
names = [n for n, _ in model.named_parameters()]
groups = {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1}


def splitter(m):
    return [params(m[0]), params(m[2])]


learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=Adam,
                splitter=splitter, moms=(0.8, 0.7, 0.8))

initial = {n: p.detach().clone().flatten().tolist() for n, p in model.named_parameters()}


class Recorder_(Callback):
    order = 100  # after ParamScheduler (60): hypers are already set when we look

    def __init__(self):
        self.steps = []
        self.stage = 0

    def after_backward(self):
        if not self.training:
            return
        rec = {"stage": self.stage, "pct_train": float(self.learn.pct_train),
               "hypers": [{k: float(h[k]) for k in ("lr", "mom", "sqr_mom", "eps", "wd")}
                          for h in self.learn.opt.hypers],
               "grads": {}}
        for n, p in self.learn.model.named_parameters():
            rec["grads"][n] = None if p.grad is None else p.grad.detach().flatten().tolist()
        self.steps.append(rec)

    def after_step(self):
        self.steps[-1]["params"] = {n: p.detach().flatten().tolist()
                                    for n, p in self.learn.model.named_parameters()}


rec = Recorder_()
learn.add_cb(rec)
with learn.no_logging(), learn.no_bar():
    learn.freeze()
    rec.stage = 1
    learn.fit_one_cycle(1, slice(2e-2), wd=[0.3, 0.0])
    learn.unfreeze()
    rec.stage = 2
    learn.fit_one_cycle(2, slice(1e-3, 3e-2), wd=[0.3, 0.0])

do_wd = {}
for n, p in model.named_parameters():
    do_wd[n] = bool(learn.opt.state[p].get("do_wd", True))

out = {
    "generator": "tools/reference/gen_adam_goldens.py",
    "fastai_version": __import__("fastai").__version__,
    "torch_version": torch.__version__,
    "stages": [
        {"stage": 1, "freeze_to": 1, "n_epoch": 1, "n_iter": N // BS,
         "lr_max": [2e-3, 2e-2], "lr_spec": "slice(None, 2e-2)", "wd": [0.3, 0.0]},
        {"stage": 2, "freeze_to": 0, "n_epoch": 2, "n_iter": N // BS,
         "lr_max": [1e-3, 3e-2], "lr_spec": "slice(1e-3, 3e-2)", "wd": [0.3, 0.0]},
    ],
    "params": [{"name": n, "shape": list(p.shape), "group": groups[n], "do_wd": do_wd[n]}
               for n, p in model.named_parameters()],
    "initial": initial,
    "steps": rec.steps,
}
os.makedirs(os.path.dirname(out_path), exist_ok=True)
with open(out_path, "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {out_path}: {len(rec.steps)} steps")
