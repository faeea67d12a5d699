#!/usr/bin/env python3
"""Write golden fixtures for the nn/ building-block layers (tests/test_layers_golden.cpp).

Run with the reference environment (torch 1.13, fastai 2.7.19):
    ../refenv/bin/python tools/reference/gen_layer_goldens.py [--out tests/fixtures/layers]

Every case builds the layer in torch/fastai (fastai's EmbeddingDropout, RNNDropout,
WeightDropout, BatchNorm, masked_concat_pool; torch's Linear, F.cross_entropy, F.relu,
F.dropout), in float64, with the dropout masks fed in (fastai's dropout_mask is patched to return
a given mask; F.dropout masks are recovered by replaying the same torch seed on a tensor of ones),
runs forward and backward on tiny shapes, and writes inputs, outputs and gradients to one JSON
file per case:
    {"case": name, "scalars": {k: number}, "tensors": {k: {"shape": [...], "data": [...]}}}
Data are float64 written with Python's shortest round-trip repr; integer tensors (ids, targets,
masks) are written as numbers too and converted by the reader.
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

import fastai.text.models.awdlstm as awd
from fastai.layers import BatchNorm
from fastai.text.models.core import masked_concat_pool

torch.set_default_dtype(torch.float64)


def T(x):
    x = x.detach()
    if x.dtype == torch.bool:
        x = x.to(torch.int64)
    return {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1).tolist()]}


def write(out, name, tensors, scalars=None):
    path = os.path.join(out, name + ".json")
    with open(path, "w") as f:
        json.dump({"case": name, "scalars": scalars or {},
                   "tensors": {k: T(v) for k, v in tensors.items()}}, f, separators=(",", ":"))
    print("wrote", os.path.relpath(path), os.path.getsize(path), "bytes")


def bern_mask(g, shape, p):
    keep = (torch.rand(shape, generator=g) >= p).to(torch.float64)
    return keep / (1 - p)


def case_linear(out, g, bias):
    lin = nn.Linear(5, 6, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.rand(6, 5, generator=g) * 2 - 1)
        if bias:
            lin.bias.copy_(torch.rand(6, generator=g) * 2 - 1)
    x = (torch.rand(3, 4, 5, generator=g) * 2 - 1).requires_grad_()
    y = lin(x)
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    t = {"x": x, "W": lin.weight, "dy": dy, "y": y, "dx": x.grad, "dW": lin.weight.grad}
    if bias:
        t.update(b=lin.bias, db=lin.bias.grad)
    write(out, "linear_bias" if bias else "linear_nobias", t)


def case_embedding(out, g):
    V, E, p, pad = 10, 4, 0.3, 1
    emb = nn.Embedding(V, E, padding_idx=pad)
    with torch.no_grad():
        emb.weight.copy_(torch.rand(V, E, generator=g) * 0.2 - 0.1)  # fastai's U(-0.1, 0.1)
    mask = bern_mask(g, (V, 1), p)
    mask[3] = 0.0  # make sure a used row is dropped
    mask[2] = 1 / (1 - p)
    ed = awd.EmbeddingDropout(emb, p)
    ed.train()
    orig = awd.dropout_mask
    awd.dropout_mask = lambda x, sz, pp: mask.clone()
    try:
        ids = torch.tensor([[2, 3, 1, 5, 2], [7, 1, 1, 9, 0]])
        y = ed(ids)
    finally:
        awd.dropout_mask = orig
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    write(out, "embedding_dropout",
          {"ids": ids, "table": emb.weight, "row_mask": mask.reshape(V), "dy": dy, "y": y,
           "dtable": emb.weight.grad}, {"pad_idx": pad, "p": p})


def case_rnn_dropout(out, g):
    bs, sl, C, p = 3, 4, 5, 0.4
    mask = bern_mask(g, (bs, 1, C), p)
    rd = awd.RNNDropout(p)
    rd.train()
    orig = awd.dropout_mask
    awd.dropout_mask = lambda x, sz, pp: mask.clone()
    try:
        x = (torch.rand(bs, sl, C, generator=g) * 2 - 1).requires_grad_()
        y = rd(x)
    finally:
        awd.dropout_mask = orig
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    write(out, "rnn_dropout", {"x": x, "mask": mask.reshape(bs, C), "dy": dy, "y": y,
                               "dx": x.grad})


def case_weight_dropout(out, g):
    # fastai WeightDropout wrapping an nn.Linear on its 'weight' (W_eff = dropout(W_raw)),
    # followed by the linear layer itself: checks forward and the dW_raw path.
    p = 0.5
    lin = nn.Linear(5, 6)
    with torch.no_grad():
        lin.weight.copy_(torch.rand(6, 5, generator=g) * 2 - 1)
        lin.bias.copy_(torch.rand(6, generator=g) * 2 - 1)
    wd = awd.WeightDropout(lin, p, layer_names="weight")
    wd.train()
    torch.manual_seed(123)
    mask = F.dropout(torch.ones(6, 5), p=p)  # the same draws F.dropout makes below
    torch.manual_seed(123)
    x = (torch.rand(3, 5, generator=g) * 2 - 1).requires_grad_()
    y = wd(x)
    ref = x @ (wd.weight_raw * mask).t() + lin.bias
    assert torch.allclose(y, ref), "mask replay failed"
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    write(out, "weight_dropout",
          {"x": x, "W_raw": wd.weight_raw, "b": lin.bias, "mask": mask, "dy": dy, "y": y,
           "dx": x.grad, "dW_raw": wd.weight_raw.grad, "db": lin.bias.grad}, {"p": p})


def case_dropout_relu(out, g):
    p = 0.2
    x = (torch.rand(4, 7, generator=g) * 2 - 1).requires_grad_()
    torch.manual_seed(7)
    mask = F.dropout(torch.ones(4, 7), p=p)
    torch.manual_seed(7)
    y = F.relu(F.dropout(x, p=p, training=True))
    assert torch.allclose(y, F.relu(x * mask)), "mask replay failed"
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    write(out, "dropout_relu", {"x": x, "mask": mask, "dy": dy, "y": y, "dx": x.grad}, {"p": p})


def case_batchnorm(out, g):
    N, C = 6, 5
    bn = BatchNorm(C, ndim=1)  # fastai: weight 1, bias 1e-3; eps 1e-5, momentum 0.1
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(C, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    w_init, b_init = bn.weight.detach().clone(), bn.bias.detach().clone()
    with torch.no_grad():  # non-trivial affine parameters for the test
        bn.weight.copy_(torch.rand(C, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(C, generator=g) - 0.5)
    bn.train()
    x = (torch.rand(N, C, generator=g) * 4 - 1).requires_grad_()
    y = bn(x)
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    bn.eval()
    xe = torch.rand(3, C, generator=g) * 2 - 1
    with torch.no_grad():
        ye = bn(xe)
    write(out, "batchnorm",
          {"x": x, "weight": bn.weight, "bias": bn.bias, "running_mean0": rm0,
           "running_var0": rv0, "y": y, "running_mean1": bn.running_mean,
           "running_var1": bn.running_var, "dy": dy, "dx": x.grad, "dweight": bn.weight.grad,
           "dbias": bn.bias.grad, "x_eval": xe, "y_eval": ye, "weight_init": w_init,
           "bias_init": b_init},
          {"eps": bn.eps, "momentum": bn.momentum})


def case_pool(out, g):
    bs, Tn, C, bptt = 4, 10, 3, 4
    pad = torch.zeros(bs, Tn, dtype=torch.bool)
    pad[1, 8:] = True            # end padding inside the last chunk (k = 2)
    pad[2, :4] = True            # a whole front chunk of padding, then 1 pad at the end
    pad[2, 9:] = True
    pad[3, :8] = True            # only the last chunk is real, 1 pad at its end
    pad[3, 9:] = True
    x = (torch.rand(bs, Tn, C, generator=g) * 2 - 1).requires_grad_()
    y = masked_concat_pool(x, pad, bptt)
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    write(out, "masked_concat_pool", {"out": x, "pad_mask": pad, "y": y, "dy": dy, "dout": x.grad},
          {"bptt": bptt})


def case_lm_ce(out, g):
    N, E, V = 11, 6, 40
    dec = nn.Linear(E, V)
    with torch.no_grad():
        dec.weight.copy_(torch.rand(V, E, generator=g) * 2 - 1)
        dec.bias.copy_(torch.rand(V, generator=g) * 2 - 1)
    h = (torch.rand(N, E, generator=g) * 4 - 2).requires_grad_()
    tgt = torch.randint(0, V, (N,), generator=g)
    logits = dec(h)
    loss = F.cross_entropy(logits, tgt)
    loss.backward()
    correct = int((logits.argmax(1) == tgt).sum())
    write(out, "lm_softmax_ce",
          {"hidden": h, "W": dec.weight, "b": dec.bias, "targets": tgt, "dhidden": h.grad,
           "dW": dec.weight.grad, "db": dec.bias.grad},
          {"loss": float(loss), "correct": correct})


def case_lm_ce_acc(out, g):
    # Accuracy check: targets chosen so that some rows are argmax hits.
    N, E, V = 9, 5, 30
    dec = nn.Linear(E, V)
    with torch.no_grad():
        dec.weight.copy_(torch.rand(V, E, generator=g) * 2 - 1)
        dec.bias.copy_(torch.rand(V, generator=g) * 2 - 1)
    h = (torch.rand(N, E, generator=g) * 4 - 2).requires_grad_()
    with torch.no_grad():
        am = dec(h).argmax(1)
    tgt = torch.randint(0, V, (N,), generator=g)
    tgt[::2] = am[::2]
    logits = dec(h)
    loss = F.cross_entropy(logits, tgt)
    loss.backward()
    correct = int((logits.argmax(1) == tgt).sum())
    write(out, "lm_softmax_ce_acc",
          {"hidden": h, "W": dec.weight, "b": dec.bias, "targets": tgt, "dhidden": h.grad,
           "dW": dec.weight.grad, "db": dec.bias.grad},
          {"loss": float(loss), "correct": correct})


def case_small_ce(out, g):
    N, C = 7, 3
    logits = (torch.rand(N, C, generator=g) * 6 - 3).requires_grad_()
    tgt = torch.randint(0, C, (N,), generator=g)
    loss = F.cross_entropy(logits, tgt)
    loss.backward()
    correct = int((logits.argmax(1) == tgt).sum())
    write(out, "softmax_ce", {"logits": logits, "targets": tgt, "dlogits": logits.grad,
                              "probs": F.softmax(logits, 1)},
          {"loss": float(loss), "correct": correct})


def bench_peer(rows, reps=5):
    """Time the PyTorch peer of nn::lm_softmax_ce_forward_backward: Linear(400 -> 60000) +
    F.cross_entropy, forward + backward, float32, 1 thread; prints the median of `reps` runs."""
    import time
    torch.set_num_threads(1)
    V, E = 60000, 400
    dec = nn.Linear(E, V).float()
    h = torch.rand(rows, E, dtype=torch.float32, requires_grad=True)
    tgt = torch.randint(0, V, (rows,))
    ts, cs = [], []
    for _ in range(reps):
        dec.zero_grad()
        h.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        F.cross_entropy(dec(h), tgt).backward()
        cs.append(time.process_time() - c0)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    cs.sort()
    m = len(ts) // 2
    print(f"torch {torch.__version__} Linear+F.cross_entropy fwd+bwd N={rows} V={V} E={E} "
          f"threads=1: wall median {ts[m]:.3f} s (min {ts[0]:.3f}, max {ts[-1]:.3f}), "
          f"cpu median {cs[m]:.3f} s = {6*rows*V*E/cs[m]/1e9:.1f} GFLOP/s (by cpu time)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures", "layers"))
    ap.add_argument("--bench-ce", type=int, metavar="N", default=0,
                    help="instead of writing fixtures, time the PyTorch peer of the fused LM "
                         "loss on N rows (V=60000, E=400, 1 thread)")
    a = ap.parse_args()
    if a.bench_ce:
        bench_peer(a.bench_ce)
        return
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(20261124)
    case_linear(a.out, g, True)
    case_linear(a.out, g, False)
    case_embedding(a.out, g)
    case_rnn_dropout(a.out, g)
    case_weight_dropout(a.out, g)
    case_dropout_relu(a.out, g)
    case_batchnorm(a.out, g)
    case_pool(a.out, g)
    case_lm_ce(a.out, g)
    case_lm_ce_acc(a.out, g)
    case_small_ce(a.out, g)


if __name__ == "__main__":
    main()
