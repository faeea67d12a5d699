#!/usr/bin/env python3
"""Writes the small DataFrame pickles that tests/test_dataset_pickle.cpp reads, with real pandas
(run once under pandas 1.x and once under 2.x), from a few labeled papers of
../shared/data/labeled/inspire_labeled.jsonl:

  original_pandas<MAJOR>.pkl  the original create_dataset.py's output: columns `labels`
                               (int64: 0 rejected, 1 non_core, 2 core) and `text`
  columns_pandas<MAJOR>.pkl    the later column set: id (int64), inspire_categories (lists),
                               label (str), title, abstract (one NaN: a bad row), text, is_valid (bool)
  categorical_pandas<MAJOR>.pkl  a `category` column: must be refused with a clear error
  expected.json                what a correct reader must return (written by the pandas 2 run)

Setup: python3 -m venv /tmp/pd1 && /tmp/pd1/bin/pip install pandas==1.5.3 numpy==1.26.4
       python3 -m venv /tmp/pd2 && /tmp/pd2/bin/pip install pandas==2.2.3
Usage: /tmp/pd1/bin/python tools/reference/gen_pandas_pickles.py
       /tmp/pd2/bin/python tools/reference/gen_pandas_pickles.py
"""
import json
import os

import numpy as np
import pandas as pd

data = "../shared/data/labeled/inspire_labeled.jsonl"
out = "tests/fixtures/pandas"
major = pd.__version__.split(".")[0]
rows = [json.loads(l) for l in open(data, encoding="utf-8")]
pick = [r for r in rows if r["label"] == "rejected"][:2]
pick += [r for r in rows if r["label"] == "core" and r["id"].startswith("inspire:")][:3]
pick += [r for r in rows if r["label"] == "non_core" and r["id"].startswith("inspire:")][:2]
num = {"rejected": 0, "non_core": 1, "core": 2}
text = [r["title"] + " <ENDTITLE> " + r["abstract"] for r in pick]

orig = pd.DataFrame({"labels": [num[r["label"]] for r in pick], "text": text})
orig.to_pickle(f"{out}/original_pandas{major}.pkl")

abstracts = [r["abstract"] for r in pick]
abstracts[3] = np.nan  # a record without abstract
cols = pd.DataFrame({
    "id": [int(r["id"].split(":")[1]) for r in pick],
    "inspire_categories": [r.get("inspire_categories") or [] for r in pick],
    "label": [r["label"] for r in pick],
    "title": [r["title"] for r in pick],
    "abstract": abstracts,
    "is_valid": [i % 3 == 0 for i in range(len(pick))],
})
cols["text"] = cols["title"] + " <ENDTITLE> " + cols["abstract"]
cols.to_pickle(f"{out}/columns_pandas{major}.pkl")

cat = pd.DataFrame({"label": pd.Categorical([r["label"] for r in pick]), "text": text})
cat.to_pickle(f"{out}/categorical_pandas{major}.pkl")

if major == "2":
    exp = {
        "original": [{"label": r["label"], "text": t} for r, t in zip(pick, text)],
        "columns": [
            None if isinstance(a, float) else
            {"id": str(i), "label": r["label"], "text": t, "split": "valid" if v else "train"}
            for r, i, a, t, v in zip(pick, cols["id"], abstracts, cols["text"], cols["is_valid"])
        ],
    }
    with open(f"{out}/expected.json", "w", encoding="utf-8") as f:
        json.dump(exp, f, indent=1, ensure_ascii=False)
        f.write("\n")
print(f"pandas {pd.__version__}, numpy {np.__version__}: wrote {out}/*_pandas{major}.pkl")
