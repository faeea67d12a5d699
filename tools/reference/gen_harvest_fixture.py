#!/usr/bin/env python3
"""Writes tests/fixtures/harvest/inspire_records.json: a few labeled papers of
../shared/data/labeled/inspire_labeled.jsonl written in INSPIRE's JSON shapes, for the local
test server of tests/test_create_dataset.cpp (it plays OpenSearch and the REST API).

* "literature": records-hep documents (the `_source` OpenSearch returns, and the `metadata` of the
  REST API): control_number (the real INSPIRE recid), titles [{title, source}], abstracts
  [{value, source}], core (true; false or absent for non_core), inspire_categories [{term}],
  and _created. The titles, abstracts, labels and recids are real; the _created dates are
  assigned here (spread over 2019-11 .. 2020-03, with 2019-12-31 on purpose: the original lost
  the whole end month), as are a copy of one record without its abstract.
* "workflows": holdingpen-hep documents for the rejected papers (_extra_data.approved false,
  metadata.acquisition_source.datetime); the workflow id is the fixture id of the paper.

Usage: python3 tools/reference/gen_harvest_fixture.py [DATA.jsonl] [OUT.json]
"""
import json
import sys

data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/labeled/inspire_labeled.jsonl"
out = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/harvest/inspire_records.json"
rows = [json.loads(l) for l in open(data, encoding="utf-8")]
core = [r for r in rows if r["id"].startswith("inspire:") and r["split"] == "train" and r["label"] == "core"][:8]
non = [r for r in rows if r["id"].startswith("inspire:") and r["split"] == "train" and r["label"] == "non_core"][:6]
rej = [r for r in rows if r["label"] == "rejected"][:3]
dates = ["2019-11-03T10:00:00", "2019-11-28T23:59:59", "2019-12-01T00:00:00", "2019-12-15T12:30:00",
         "2019-12-31T23:00:00", "2020-01-01T00:00:01", "2020-01-17T08:00:00", "2020-01-31T22:10:00",
         "2020-02-02T09:00:00", "2020-02-29T18:00:00", "2020-03-01T00:00:00"]


def cats(r):
    c = r.get("inspire_categories") or []
    return [{"term": t} for t in c] if c else [{"term": "Phenomenology-HEP"}]


lit = []
for i, r in enumerate(core + non):
    rec = {
        "control_number": int(r["id"].split(":")[1]),
        "titles": [{"title": r["title"], "source": "arXiv"}],
        "abstracts": [{"value": r["abstract"], "source": "arXiv"}],
        "inspire_categories": cats(r),
        "_created": dates[i % len(dates)],
    }
    if r["label"] == "core":
        rec["core"] = True
    elif i % 2 == 0:
        rec["core"] = False  # the other non_core records have no `core` field
    lit.append(rec)
# A record with no abstract (dropped), in range.
noabs = dict(lit[1])
noabs["control_number"] = 1
del noabs["abstracts"]
noabs["_created"] = "2019-12-10T10:00:00"
lit.append(noabs)
wf = []
for i, r in enumerate(rej):
    wf.append({
        "id": int(r["id"].split(":")[1]),
        "metadata": {
            "titles": [{"title": r["title"], "source": "arXiv"}],
            "abstracts": [{"value": r["abstract"], "source": "arXiv"}],
            "inspire_categories": cats(r),
            "acquisition_source": {"datetime": ["2019-11-20T10:00:00", "2019-12-31T12:00:00", "2020-03-02T10:00:00"][i],
                                   "method": "hepcrawl", "source": "arXiv"},
        },
        "_extra_data": {"approved": False},
    })
with open(out, "w", encoding="utf-8") as f:
    json.dump({"literature": lit, "workflows": wf}, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{out}: {len(lit)} literature records, {len(wf)} workflows")
