#!/usr/bin/env python3
"""Golden fixtures for nn/lstm: torch.nn.LSTM forward + backward over two consecutive windows.

Writes tests/fixtures/lstm/lstm_golden.json. Run from the repo root with the reference env:
    ../refenv/bin/python tools/reference/gen_lstm_goldens.py
Everything is computed in float64 (torch.double); the C++ test compares its double path tightly
and its float path at ~1e-5 relative.

Scenario: one nn.LSTM(in=IN, hidden=H, batch_first=True) with a non-zero initial state (h0, c0).
Window 1: y1, (h1, c1) = lstm(x1, (h0, c0)).  Window 2 starts from the DETACHED (h1, c1):
y2, (h2, c2) = lstm(x2, (h1, c1)).  Loss = sum(y1*dy1) + sum(y2*dy2) + sum(h2*dh2) + sum(c2*dc2).
Recorded: inputs, weights, outputs, final states, and the gradients dx1, dx2, dh0, dc0 (window 1),
dh1, dc1 (input state of window 2) and the parameter gradients accumulated over both windows.
"""
import json
import os

import torch

IN, H, BS, SL = 5, 7, 3, 4


def t2j(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().reshape(-1).tolist()]}


def main():
    torch.manual_seed(20261124)
    lstm = torch.nn.LSTM(IN, H, batch_first=True).double()
    g = torch.Generator().manual_seed(7)

    def rnd(*s):
        return (torch.rand(*s, generator=g, dtype=torch.double) * 2 - 1)

    x1, x2 = rnd(BS, SL, IN).requires_grad_(), rnd(BS, SL, IN).requires_grad_()
    h0 = (0.5 * rnd(BS, H)).requires_grad_()
    c0 = (0.5 * rnd(BS, H)).requires_grad_()
    dy1, dy2, dh2, dc2 = rnd(BS, SL, H), rnd(BS, SL, H), rnd(BS, H), rnd(BS, H)

    y1, (h1, c1) = lstm(x1, (h0.unsqueeze(0), c0.unsqueeze(0)))
    h1d = h1.detach().squeeze(0).clone().requires_grad_()
    c1d = c1.detach().squeeze(0).clone().requires_grad_()
    y2, (h2, c2) = lstm(x2, (h1d.unsqueeze(0), c1d.unsqueeze(0)))
    loss = (y1 * dy1).sum() + (y2 * dy2).sum() + (h2.squeeze(0) * dh2).sum() + (c2.squeeze(0) * dc2).sum()
    loss.backward()

    out = {
        "config": {"in": IN, "hidden": H, "bs": BS, "sl": SL, "torch": torch.__version__},
        "weight_ih": t2j(lstm.weight_ih_l0), "weight_hh": t2j(lstm.weight_hh_l0),
        "bias_ih": t2j(lstm.bias_ih_l0), "bias_hh": t2j(lstm.bias_hh_l0),
        "x1": t2j(x1), "x2": t2j(x2), "h0": t2j(h0), "c0": t2j(c0),
        "dy1": t2j(dy1), "dy2": t2j(dy2), "dh2": t2j(dh2), "dc2": t2j(dc2),
        "y1": t2j(y1), "y2": t2j(y2),
        "h1": t2j(h1.squeeze(0)), "c1": t2j(c1.squeeze(0)),
        "h2": t2j(h2.squeeze(0)), "c2": t2j(c2.squeeze(0)),
        "dx1": t2j(x1.grad), "dx2": t2j(x2.grad),
        "dh0": t2j(h0.grad), "dc0": t2j(c0.grad), "dh1": t2j(h1d.grad), "dc1": t2j(c1d.grad),
        "dweight_ih": t2j(lstm.weight_ih_l0.grad), "dweight_hh": t2j(lstm.weight_hh_l0.grad),
        "dbias_ih": t2j(lstm.bias_ih_l0.grad), "dbias_hh": t2j(lstm.bias_hh_l0.grad),
    }
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    path = os.path.join(root, "tests", "fixtures", "lstm", "lstm_golden.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
