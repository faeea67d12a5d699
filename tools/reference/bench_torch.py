#!/usr/bin/env python3
"""PyTorch / fastai peer for bench/bench_lstm.cpp, bench_lm.cpp and bench_predict.cpp (same case names).

    OMP_NUM_THREADS=1 ../refenv/bin/python tools/reference/bench_torch.py [--reps 3] [--filter RE] [--threads N]

torch.set_num_threads(N) (default 1; the BLAS follows OMP_NUM_THREADS / OPENBLAS_NUM_THREADS,
which bench/compare.py sets to N too). Each case: 1 warm-up, then --reps timed runs; prints one JSON object
{case: {"cpu_ms": median process CPU time, "wall_ms": median wall time, "reps": n}} on stdout.
"""
import os

# One thread everywhere, including the BLAS that torch calls (Debian's torch uses the system
# libblas.so.3: install libopenblas0-pthread so that it is OpenBLAS, not the reference BLAS).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import re
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

V, E = 60000, 400


def lstm_case(mode, inp, h, bs, sl):
    lstm = torch.nn.LSTM(inp, h, batch_first=True)
    x = torch.rand(bs, sl, inp) * 2 - 1
    dy = torch.rand(bs, sl, h) * 2 - 1
    if mode == "infer":
        lstm.eval()

        def f():
            with torch.no_grad():
                lstm(x)
    elif mode == "fwd":
        def f():
            lstm(x)
    else:
        xg = x.clone().requires_grad_()

        def f():
            y, _ = lstm(xg)
            y.backward(dy)
    return f


def softmax_ce_case(rows):
    hid = (torch.rand(rows, E) * 2 - 1).requires_grad_()
    W = (torch.rand(V, E) * 0.2 - 0.1).requires_grad_()
    b = torch.zeros(V, requires_grad=True)
    tgt = torch.randint(0, V, (rows,))

    def f():
        loss = F.cross_entropy(F.linear(hid, W, b), tgt)
        loss.backward()
    return f


def lm_case(bs, bptt, stage1):
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
    from fastai.text.models.core import get_language_model
    from fastai.optimizer import Adam
    cfg = dict(awd_lstm_lm_config)
    model = get_language_model(AWD_LSTM, V, config=cfg, drop_mult=0.7)
    model.train()
    if stage1:
        for p in model[0].rnns.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = Adam(params, lr=1e-3, wd=1e-7, mom=0.8)

    def f():
        ids = torch.randint(0, V, (bs, bptt))
        tgt = torch.randint(0, V, (bs, bptt))
        logits = model(ids)[0]
        loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return f


def predict_case(n_docs):
    """fastai's text classifier in eval mode on n_docs documents of 250 tokens, one at a time
    (learn.predict's batch of one; no tokenization), as bench/bench_predict.cpp."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_text_classifier
    model = get_text_classifier(AWD_LSTM, 60008, 3, drop_mult=0.5)
    model.eval()
    g = torch.Generator().manual_seed(7)
    docs = []
    for _ in range(n_docs):
        d = torch.randint(9, 60000, (1, 250), generator=g)
        d[0, 0] = 2
        docs.append(d)

    def f():
        with torch.no_grad():
            for d in docs:
                model.reset()
                torch.softmax(model(d)[0], dim=-1)
    return f


CASES = {}
for m in ("fwd", "fwdbwd", "infer"):
    for (i, h, bs, sl) in ((400, 1152, 64, 70), (1152, 1152, 64, 70), (400, 1152, 1, 250),
                           (1152, 1152, 1, 250)):
        if m == "infer" and bs != 1:
            continue
        CASES[f"lstm_{m}/{i}x{h}/b{bs}x{sl}"] = (lambda m=m, i=i, h=h, bs=bs, sl=sl: lstm_case(m, i, h, bs, sl))
CASES["lm_softmax_ce/V60000xE400/n560"] = lambda: softmax_ce_case(560)
CASES["lm_train_step/V60000/b8x70"] = lambda: lm_case(8, 70, False)
CASES["lm_train_step_stage1/V60000/b8x70"] = lambda: lm_case(8, 70, True)
CASES["predict_doc/V60008/t250"] = lambda: predict_case(1)
CASES["predict_batch/V60008/16xt250"] = lambda: predict_case(16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--filter", default=".")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = {}
    for name, make in CASES.items():
        if not re.search(a.filter, name):
            continue
        f = make()
        f()  # warm-up
        cpu, wall = [], []
        for _ in range(a.reps):
            c0, w0 = time.process_time(), time.perf_counter()
            f()
            cpu.append((time.process_time() - c0) * 1e3)
            wall.append((time.perf_counter() - w0) * 1e3)
        out[name] = {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall), "reps": a.reps}
        print(name, out[name], file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
