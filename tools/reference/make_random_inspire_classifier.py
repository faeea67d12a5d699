#!/usr/bin/env python3
"""A full-size, RANDOM-weight INSPIRE classifier, for load tests and latency numbers only.

INSPIRE's exact architecture (get_text_classifier(AWD_LSTM, V, 3, drop_mult=0.5): E=400, H=1152,
3 layers, head 1200->50->3) with fastai's random init, and a vocab built as INSPIRE builds it
(make_vocab(min_freq=2, max_vocab=60000) over the training split of the labeled data). Compute per
request does not depend on the weight values, so latencies measured with it are those of a
trained model of the same vocab size; its predictions mean nothing.

Writes tools/reference/out/random_inspire_classifier.pth (state_dict) and .../itos.pkl; then
    build/inspire-classifier import-fastai --weights tools/reference/out/random_inspire_classifier.pth \
        --itos tools/reference/out/itos.pkl --out tools/reference/out/random_inspire_classifier.safetensors
Also prints fastai's own single-paper latency (learn.predict path: tokenize, numericalize, model
eval, softmax) with torch set to 1 thread, as the peer number for docs/serving.md.

    ../refenv/bin/python tools/reference/make_random_inspire_classifier.py [--docs 4000] [--time 50]
A small one (fast model, to load-test the HTTP layer itself with thousands of requests):
    ... make_random_inspire_classifier.py --emb 16 --hid 32 --time 0 --name small_random_classifier
"""
import argparse
import json
import pickle
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

warnings.filterwarnings("ignore")

import torch  # noqa: E402
from fastai.text.core import SpacyTokenizer, Tokenizer  # noqa: E402
from fastai.text.data import make_vocab  # noqa: E402
from fastai.text.models.awdlstm import AWD_LSTM  # noqa: E402
from fastai.text.models.core import get_text_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "labeled" / "inspire_labeled.jsonl"
OUT = ROOT / "tools" / "reference" / "out"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=4236, help="training records used for the vocab")
    ap.add_argument("--time", type=int, default=50, help="papers timed with fastai (0: skip)")
    ap.add_argument("--emb", type=int, default=400, help="emb_sz (INSPIRE: 400)")
    ap.add_argument("--hid", type=int, default=1152, help="n_hid (INSPIRE: 1152)")
    ap.add_argument("--name", default="random_inspire_classifier", help="output file stem")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = Tokenizer(SpacyTokenizer())
    recs = []
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("split") == "train" and "title" in r and "abstract" in r:
                recs.append(r)
            if len(recs) >= args.docs:
                break
    counter = Counter()
    for r in recs:
        counter.update(list(tok(r["title"] + " <ENDTITLE> " + r["abstract"])))
    itos = make_vocab(counter, min_freq=2, max_vocab=60000)
    from fastai.text.models.awdlstm import awd_lstm_clas_config
    cfg = dict(awd_lstm_clas_config, emb_sz=args.emb, n_hid=args.hid)
    model = get_text_classifier(AWD_LSTM, len(itos), 3, config=cfg, drop_mult=0.5).eval()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), OUT / f"{args.name}.pth")
    with open(OUT / "itos.pkl", "wb") as f:
        pickle.dump(list(itos), f, protocol=2)
    print(f"vocab {len(itos)}; wrote {OUT}/{args.name}.pth and itos.pkl", file=sys.stderr)

    if args.time:
        stoi = {w: i for i, w in enumerate(itos)}
        lat = []
        for r in recs[: args.time]:
            t0 = time.perf_counter()
            ids = [stoi.get(t, 0) for t in tok(r["title"] + " <ENDTITLE> " + r["abstract"])]
            with torch.no_grad():
                p = torch.softmax(model(torch.tensor([ids]))[0][0], -1)
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        print(json.dumps({"peer": "fastai 2.7 / torch %s, 1 thread" % torch.__version__,
                          "papers": len(lat), "median_ms": round(statistics.median(lat), 2),
                          "p90_ms": round(lat[int(0.9 * (len(lat) - 1))], 2),
                          "max_ms": round(lat[-1], 2)}))


if __name__ == "__main__":
    main()
