"""Shared fixtures for the inspire_classifier tests.

The tests compare the package with the `inspire-classifier` command built from the same sources:
set INSPIRE_CLI to its path, or build it at build/inspire-classifier (as .ci/run does).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
TORCH_FIXTURES = REPO / "tests" / "fixtures" / "torch"
LABELED = REPO.parent / "shared" / "data" / "labeled" / "inspire_labeled.jsonl"

# Texts the tokenizer and the binding must pass through unchanged.
EDGE_CASES: List[Tuple[str, str]] = [
    ("", ""),
    ("Measurement of the top quark mass", ""),
    ("", "We measure the mass."),
    ("  leading and trailing spaces  ", "\t tabs \n and newlines \r\n"),
    ("Élan vital: ß, ﬁ ligature, Ωμέγα, 中文, emoji 🚀", "accents àéîõü and CJK 日本語 text"),
    ("NUL\x00inside", "a title with a NUL byte above\x00 and here"),
    ("ALL CAPS TITLE WITH $\\LaTeX$", "repeated repeated repeated " * 800),  # > 1440 tokens
]


def _first_papers(n: int) -> List[Tuple[str, str]]:
    if not LABELED.exists():
        pytest.fail(f"{LABELED} is missing: the tests need the shared labeled data")
    out = []
    with LABELED.open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("split") == "valid":
                out.append((rec["title"], rec["abstract"]))
                if len(out) == n:
                    break
    return out


@pytest.fixture(scope="session")
def papers() -> List[Tuple[str, str]]:
    """16 real INSPIRE papers (valid split) and the edge cases above."""
    return _first_papers(16) + EDGE_CASES


@pytest.fixture(scope="session")
def cli() -> Path:
    """The inspire-classifier command built from this checkout."""
    path = Path(os.environ.get("INSPIRE_CLI", REPO / "build" / "inspire-classifier"))
    if not path.is_file():
        pytest.fail(
            f"the inspire-classifier command is not at {path}: build it "
            "(cmake --build build --target inspire-classifier) or set INSPIRE_CLI"
        )
    return path


def run_cli(cli: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([str(cli), *args], capture_output=True, text=True)
    assert r.returncode == 0, f"{cli} {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
    return r


def cli_predict(cli: Path, tmp_path: Path, papers, *extra: str) -> List[dict]:
    """The command's {'prediction', 'scores'} for each paper (`predict` on JSON Lines)."""
    src = tmp_path / "papers.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i, (t, a) in enumerate(papers):
            f.write(json.dumps({"id": i, "title": t, "abstract": a}) + "\n")
    out = tmp_path / "predictions.jsonl"
    run_cli(cli, "predict", "-q", "-i", str(src), "-o", str(out), *extra)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == list(range(len(papers)))
    return [{"prediction": r["prediction"], "scores": r["scores"]} for r in rows]
