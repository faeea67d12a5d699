#!/usr/bin/env python3
"""fastai 2.7.19 + spaCy 3.8.7 tokenizer throughput on the documents of bench/bench_tokenizer.cpp
(first 2,000 HEP records, title + " <ENDTITLE> " + abstract), single process.

  predict: Tokenizer(SpacyTokenizer()) called once per document (fastai's predict path)
  batch:   TokenizeWithRules(SpacyTokenizer()) over all documents (the training path, one worker)

Usage: OMP_NUM_THREADS=1 ../refenv/bin/python tools/reference/bench_tokenizer_fastai.py [--reps 3]
Prints docs/s per repetition and the median, by wall time and by process CPU time
(the CPU-time figure is comparable with Google Benchmark's items_per_second, which uses CPU time).
"""
import argparse
import json
import os
import statistics
import time

from fastai.text.core import SpacyTokenizer, Tokenizer, TokenizeWithRules

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PATH = os.path.join(ROOT, "..", "shared", "data", "unlabeled", "hep_abstracts_unlabeled.jsonl")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    docs = []
    with open(PATH, encoding="utf-8") as f:
        for line in f:
            if len(docs) >= 2000:
                break
            r = json.loads(line)
            docs.append(r["title"] + " <ENDTITLE> " + r["abstract"])
    pred = Tokenizer(SpacyTokenizer())
    batch = TokenizeWithRules(SpacyTokenizer())
    pred(docs[0])
    for name, fn in (("predict", lambda: [pred(d) for d in docs]),
                     ("batch", lambda: [list(t) for t in batch(docs)])):
        rates, cpu_rates = [], []
        for _ in range(args.reps):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            rates.append(len(docs) / (time.perf_counter() - t0))
            cpu_rates.append(len(docs) / (time.process_time() - c0))
        print("fastai %-8s docs/s (wall): %s  median %.1f | docs/s (CPU time): %s  median %.1f" % (
            name, " ".join("%.1f" % r for r in rates), statistics.median(rates),
            " ".join("%.1f" % r for r in cpu_rates), statistics.median(cpu_rates)))


if __name__ == "__main__":
    main()
