#!/usr/bin/env python3
"""Golden tokens from the REAL fastai 2.7.19 + spaCy 3.8.7 tokenizer (reference env only).

Corpora (document units):
  inspire  labeled/inspire_labeled.jsonl: title + " <ENDTITLE> " + abstract; the 50 rows with
           title_abstract_split == false use their `text` field (title and abstract run together)
  hep      unlabeled/hep_abstracts_unlabeled.jsonl: title + " <ENDTITLE> " + abstract
  wiki     general_english/wikitext-2/wiki.valid.tokens: one document per non-blank line
           (a paragraph or a " = Heading = " line), line ending removed, text otherwise raw
  imdb     first 2,000 reviews of general_english/imdb/imdb_train.jsonl.gz (`text`)

For every document both fastai paths are run:
  predict  Tokenizer(SpacyTokenizer()) called on the string   (rules -> spaCy)
  train    TokenizeWithRules(SpacyTokenizer()) on a batch      (rules -> spaCy -> replace_space)

Writes one JSON object per line {"corpus","id","text","predict","train"}:
  tools/reference/out/tokenizer_golden.jsonl.gz     (all documents; git-ignored)
  tests/fixtures/tokenizer/golden_sample.jsonl.gz   (every --every-th document of each corpus)

Usage: ../refenv/bin/python tools/reference/tokenize_golden.py [--every 8]
"""
import argparse
import gzip
import json
import os
import sys
import time

from fastai.text.core import SpacyTokenizer, Tokenizer, TokenizeWithRules

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "..", "shared", "data")


# Hand-written edge cases (the expected tokens still come from the real fastai + spaCy).
EDGE = [
    "",
    " ",
    "Search for new physics in pp collisions at $\\sqrt{s}=13$ TeV <ENDTITLE> We present results from the CMS experiment, e.g. the W' boson (m = 1000 GeV)...",
    "The Higgs-boson's mass is 125.1 +/- 0.2 GeV; see Ref. [12] & arXiv:1207.7214.",
    "Don't use N=4 SYM at 2-loop order, i.e., we compute $\\alpha_s(M_Z)$ = 0.118. U.S. results",
    "The LHC's run-2 10^{-3} 3.5x10^5 50% 1.5-2.0",
    "AdS/CFT correspondence in d=4 dimensions: x-ray, K\u00e4hler manifold, \u039bCDM, \"quoted\", 'single' (see Fig. 3).",
    "Phys. Rev. D 100, 012345 (2019); Ph.D. thesis vs. e.g. etc. et al. a 3:1 ratio :) 10 km 5GeV 5kg 3.0% 5$ $5 2+2 e+e- -> mu+mu-",
    "newline &amp; &lt;x&gt; AT&amp;T R&D &quot;q&quot; ... 1/2 #3 https://arxiv.org/abs/1234.5678 www.cern.ch user@cern.ch",
    "We study O(N) models; the beta-function is ~ 0.5 and  \u0127=1 \u2014 no. \u2026 1e-5 \u00d710^3 \u2265 2 \u00b11 \u00b0C 20\u00b0C.",
    "Measurement of the W-boson mass with 2.5\u03c3 significance, p_T > 20 GeV/c^2 (Eq. (3)) and SU(2)xU(1) at 95% CL.",
    "We've shown it's non-perturbative; they're co-authors, can't U(1) Z' 3-4 ~100 $\\alpha$.",
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u039f\u03b4\u03c5\u03c3\u03c3\u03b5\u03cd\u03c2 \u03a3 A\u03a3 \u0130stanbul \u0130I",
    "&copy &copy; &times3 &notit; &notin; &#0; &#128; &#x110000; &#xD800; &#1; &#65 &#x41; &#X42 &amp &lt;&gt &unknown; &#; &#x; &",
    "word word word word. Go go go Go! the the the",
    "no no no no no",
    "aaaa bbb cc 1000000 !!!!! ......",
    "hello\n\nworld\t tab \u00a0nbsp  two   spaces\r\nCRLF \u2028 sep",
    "x:) (: :-) <3 :D xD XD o.O 0.0 -_- ^_^ :p",
    "http://www.example.com/path?q=1#frag ftp://user:pw@10.0.0.1:21/x 8.8.8.8 192.168.0.1 1.2.3.4:8080 a@b.co",
    "U.S.A. N.Y. Mr. Smith e.g. i.e. vs. a.m. p.m. 5pm 10a.m. can't won't ain't gonna gotta lemme",
    "ALL CAPS SENTENCE HERE. MiXeD CaSe McDonald iPhone Ab AB A I",
    "\u4e2d\u6587\u6d4b\u8bd5 \ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \U0001F600 emoji\U0001F44D!",
    "\\n literal backslash-n and \\\" quote, <br /> br, <unk> unk, a @.@ b @-@ c",
    "price $100, \u00a3200, 300\u20ac, US$5, C$10, 5km/h, 10m\u00b2, 3.5GB, 20\u00b0F.",
    "e+e\u2212 \u2192 \u03bc+\u03bc\u2212, \u221as = 7 TeV, \u03c7\u00b2/ndf, \u2264 5%, \u2018quoted\u2019 \u201cdouble\u201d",
]


def docs():
    for i, text in enumerate(EDGE):
        yield "edge", "edge:%d" % i, text
    with open(os.path.join(DATA, "labeled", "inspire_labeled.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("title_abstract_split") is False:
                text = r["text"]
            else:
                text = r["title"] + " <ENDTITLE> " + r["abstract"]
            yield "inspire", r["id"], text
    with open(os.path.join(DATA, "unlabeled", "hep_abstracts_unlabeled.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            yield "hep", r["id"], r["title"] + " <ENDTITLE> " + r["abstract"]
    with open(os.path.join(DATA, "general_english", "wikitext-2", "wiki.valid.tokens"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.rstrip("\n")
            if line.strip():
                yield "wiki", "line:%d" % (i + 1), line
    with gzip.open(os.path.join(DATA, "general_english", "imdb", "imdb_train.jsonl.gz"), "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 2000:
                break
            r = json.loads(line)
            yield "imdb", r["id"], r["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args()
    all_docs = list(docs())
    predict_tok = Tokenizer(SpacyTokenizer())
    train_tok = TokenizeWithRules(SpacyTokenizer())
    t0 = time.time()
    train = [list(t) for t in train_tok([d[2] for d in all_docs])]
    out_dir = os.path.join(ROOT, "tools", "reference", "out")
    os.makedirs(out_dir, exist_ok=True)
    fix_dir = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
    os.makedirs(fix_dir, exist_ok=True)
    counts = {}
    with gzip.open(os.path.join(out_dir, "tokenizer_golden.jsonl.gz"), "wt", encoding="utf-8") as full, \
         gzip.open(os.path.join(fix_dir, "golden_sample.jsonl.gz"), "wt", encoding="utf-8", compresslevel=9) as sample:
        for (corpus, did, text), tr in zip(all_docs, train):
            pred = list(predict_tok(text))
            rec = json.dumps({"corpus": corpus, "id": did, "text": text, "predict": pred, "train": tr},
                             ensure_ascii=False)
            full.write(rec + "\n")
            k = counts.get(corpus, 0)
            if corpus == "edge" or k % args.every == 0:
                sample.write(rec + "\n")
            counts[corpus] = k + 1
    print("docs per corpus:", counts, "seconds: %.1f" % (time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
