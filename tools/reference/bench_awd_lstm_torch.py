#!/usr/bin/env python3
"""PyTorch + cuDNN peer of the CUDA backend's benchmarks (tools/device-check.sh).

The same full-size AWD-LSTM as ULMFiT / INSPIRE (vocab 60000, emb 400, hidden 1152, 3 layers,
tied decoder) in plain PyTorch with cuDNN LSTMs and fastai-style dropouts (embedding dropout,
variational dropout between layers, weight-drop on W_hh as fastai's WeightDropout does it):

  lm       LM training tokens/s at batch 64 x BPTT 70 (forward, backward, Adam step), in
           --precision fp32 | tf32 | bf16 (bf16: autocast compute, fp32 master weights + Adam)
  latency  one 250-token document through the encoder + concat pooling + classifier head (ms)
  batch    documents/s classifying batches of 250-token documents

Prints one JSON object per measurement on stdout, e.g.
  {"impl": "pytorch", "bench": "lm", "precision": "bf16", "tokens_per_s": 412345.6, ...}
Needs torch with CUDA; exits 3 with a message when torch or a GPU is missing.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", choices=["lm", "latency", "batch", "all"], default="all")
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], nargs="+", default=["fp32", "tf32", "bf16"])
    ap.add_argument("--vocab", type=int, default=60000)
    ap.add_argument("--emb", type=int, default=400)
    ap.add_argument("--hid", type=int, default=1152)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--doc-len", type=int, default=250)
    ap.add_argument("--batch-docs", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0, help="time budget per measurement")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:
        print(f"bench_awd_lstm_torch: torch is not installed ({e})", file=sys.stderr)
        sys.exit(3)
    if not torch.cuda.is_available():
        print("bench_awd_lstm_torch: torch sees no CUDA device", file=sys.stderr)
        sys.exit(3)
    dev = torch.device("cuda")
    torch.manual_seed(0)

    class AwdLstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(args.vocab, args.emb, padding_idx=1)
            sizes = [args.emb] + [args.hid] * (args.layers - 1) + [args.emb]
            self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(args.layers))
            self.raw = nn.ParameterList(nn.Parameter(r.weight_hh_l0.detach().clone()) for r in self.rnns)
            for r in self.rnns:  # fastai WeightDropout: W_hh is recomputed from the raw weight
                del r._parameters["weight_hh_l0"]
            self.dec_b = nn.Parameter(torch.zeros(args.vocab))

        def set_weights(self, train):
            for r, raw in zip(self.rnns, self.raw):
                setattr(r, "weight_hh_l0", F.dropout(raw, 0.2 * 0.7 if train else 0.0, training=train))

        def encode(self, x, train):
            self.set_weights(train)
            w = self.emb.weight
            if train:  # embedding dropout: whole rows
                m = w.new_empty(w.size(0), 1).bernoulli_(1 - 0.02 * 0.7) / (1 - 0.02 * 0.7)
                w = w * m
            h = F.embedding(x, w, padding_idx=1)
            for i, r in enumerate(self.rnns):
                if train:  # variational dropout: one mask per sequence
                    p = 0.25 * 0.7 if i == 0 else 0.15 * 0.7  # input_p, then hidden_p
                    h = h * (h.new_empty(h.size(0), 1, h.size(2)).bernoulli_(1 - p) / (1 - p))
                h, _ = r(h)
            return h

    def sync():
        torch.cuda.synchronize()

    def timed(step, min_iters=3):
        for _ in range(2):
            step()
        sync()
        n, t0 = 0, time.perf_counter()
        while n < min_iters or time.perf_counter() - t0 < args.seconds:
            step()
            n += 1
            if n % 5 == 0:
                sync()
        sync()
        return (time.perf_counter() - t0) / n

    def out(d):
        d = {"impl": "pytorch", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, **d}
        print(json.dumps(d), flush=True)

    for prec in args.precision:
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        torch.backends.cudnn.allow_tf32 = prec == "tf32"
        model = AwdLstm().to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.99), eps=1e-5, weight_decay=0.01)
        ac = dict(device_type="cuda", dtype=torch.bfloat16, enabled=prec == "bf16")
        if args.bench in ("lm", "all"):
            model.train()
            x = torch.randint(2, args.vocab, (args.bs, args.bptt), device=dev)
            y = torch.randint(2, args.vocab, (args.bs, args.bptt), device=dev)

            def step():
                with torch.autocast(**ac):
                    h = model.encode(x, True)
                    h = F.dropout(h, 0.1 * 0.7)
                    logits = F.linear(h, model.emb.weight, model.dec_b)  # tied decoder
                    loss = F.cross_entropy(logits.float().view(-1, args.vocab), y.view(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                opt.step()

            s = timed(step)
            out({"bench": "lm", "precision": prec, "bs": args.bs, "bptt": args.bptt,
                 "step_ms": s * 1e3, "tokens_per_s": args.bs * args.bptt / s})
        head = nn.Sequential(nn.Linear(3 * args.emb, 50), nn.ReLU(), nn.Linear(50, 3)).to(dev)
        model.eval()

        def classify(docs):
            with torch.no_grad(), torch.autocast(**ac):
                h = model.encode(docs, False)
                pooled = torch.cat([h[:, -1], h.max(1)[0], h.mean(1)], 1)
                return head(pooled).softmax(-1)

        if args.bench in ("latency", "all"):
            d1 = torch.randint(2, args.vocab, (1, args.doc_len), device=dev)
            s = timed(lambda: classify(d1).cpu())  # .cpu(): the answer is on the host
            out({"bench": "latency", "precision": prec, "doc_len": args.doc_len, "ms": s * 1e3})
        if args.bench in ("batch", "all"):
            db = torch.randint(2, args.vocab, (args.batch_docs, args.doc_len), device=dev)
            s = timed(lambda: classify(db).cpu())
            out({"bench": "batch", "precision": prec, "doc_len": args.doc_len,
                 "batch": args.batch_docs, "docs_per_s": args.batch_docs / s})
        del model, opt
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
