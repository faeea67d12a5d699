"""inspire_classifier.Embedder (document vectors) against the `inspire-classifier embed` command."""

from __future__ import annotations

import json
import math

import pytest

from inspire_classifier import Embedder

from conftest import REPO, run_cli

MODEL = REPO / "models" / "default.safetensors"  # an ensemble of two small classifiers


def cli_embed(cli, tmp_path, papers, *extra):
    src = tmp_path / "papers.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i, (t, a) in enumerate(papers):
            f.write(json.dumps({"id": i, "title": t, "abstract": a}) + "\n")
    out = tmp_path / "vectors.jsonl"
    run_cli(cli, "embed", "-q", "-m", str(MODEL), "-i", str(src), "-o", str(out), *extra)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == list(range(len(papers)))
    return [r["vector"] for r in rows]


def assert_close(got, want, tol):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), i
        for j, (x, y) in enumerate(zip(g, w)):
            assert math.isclose(x, y, rel_tol=tol, abs_tol=tol), (i, j, x, y)


@pytest.mark.parametrize("member", [0, 1])
def test_vectors_equal_the_commands(cli, papers, tmp_path, member):
    emb = Embedder(MODEL, member=member)
    assert emb.kind == "classifier"
    assert emb.dim == 192  # 3 x emb_sz 64
    got = emb.embed_batch(papers)
    assert_close(got, cli_embed(cli, tmp_path, papers, "--member", str(member)), 1e-6)
    # one paper alone, and dicts, give the same vectors (to summation order)
    assert_close([emb.embed(*papers[0])], got[:1], 1e-5)
    assert_close(emb.embed_batch([{"title": t, "abstract": a} for t, a in papers[:3]], batch=1),
                 got[:3], 1e-5)


def test_the_two_members_differ():
    a = Embedder(MODEL, member=0).embed("Dark matter", "We search for WIMPs.")
    b = Embedder(MODEL, member=1).embed("Dark matter", "We search for WIMPs.")
    assert a != b  # a forward and a backward encoder


def test_bad_models_and_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        Embedder(tmp_path / "missing.safetensors")
    with pytest.raises(IsADirectoryError):
        Embedder(tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.safetensors"):
        Embedder(junk)
    with pytest.raises(ValueError, match="member"):
        Embedder(MODEL, member=2)
    with pytest.raises(TypeError):
        Embedder(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Embedder(MODEL, member=-1)
    emb = Embedder(MODEL)
    with pytest.raises(ValueError, match="batch"):
        emb.embed_batch([("a", "b")], batch=0)
    with pytest.raises(TypeError):
        emb.embed(1, "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"papers\[1\]"):
        emb.embed_batch([("a", "b"), (b"bad \xff", b"x")])
    assert emb.embed_batch([]) == []
