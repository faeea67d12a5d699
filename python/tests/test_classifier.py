"""The inspire_classifier package against the inspire-classifier command and fastai's fixtures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import inspire_classifier
from inspire_classifier import Classifier

from conftest import TORCH_FIXTURES, cli_predict, run_cli

LABELS = ("rejected", "non_core", "core")
HOSTILE_MARKER = Path("/tmp/inspire_pickle_hostile_marker")  # what the hostile pickles create


@pytest.fixture(scope="module")
def default_clf() -> Classifier:
    assert inspire_classifier.has_default_model()
    return Classifier()


@pytest.fixture(scope="module")
def learner_clf() -> Classifier:
    return Classifier(model_path=str(TORCH_FIXTURES / "classifier.h5"))


def test_the_originals_usage_and_keys(default_clf, papers):
    r = default_clf.predict_coreness(*papers[0])
    assert list(r) == ["prediction", "scores"]
    assert list(r["scores"]) == list(LABELS)
    assert r["prediction"] in LABELS
    assert all(type(v) is float for v in r["scores"].values())
    assert math.isclose(sum(r["scores"].values()), 1.0, abs_tol=1e-5)
    assert r["prediction"] == max(r["scores"], key=r["scores"].get)
    # INSPIRE's temperature scores lie in [1/(e^4+2), e^4/(e^4+2)].
    assert all(0.0176 < v < 0.9647 for v in r["scores"].values())
    assert default_clf.labels == LABELS
    assert default_clf.source.startswith("embedded:")
    assert default_clf.temperature == 0.25


def test_scores_equal_the_commands(default_clf, cli, papers, tmp_path):
    expected = cli_predict(cli, tmp_path, papers)
    got = [default_clf.predict_coreness(t, a) for t, a in papers]
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"paper {i}: {papers[i][0][:60]!r}"  # same floats, bit for bit
    # Not all alike: a broken model giving one constant answer would not pass.
    assert len({json.dumps(g["scores"]) for g in got}) > len(got) // 2


def test_fp16_scores_equal_the_commands(cli, papers, tmp_path):
    clf = Classifier(fp16=True)
    assert clf.fp16
    expected = cli_predict(cli, tmp_path, papers, "--fp16")
    assert [clf.predict_coreness(t, a) for t, a in papers] == expected


def test_int8_scores_equal_the_commands(cli, papers, tmp_path):
    clf = Classifier(int8=True)
    assert clf.int8 and not clf.fp16
    expected = cli_predict(cli, tmp_path, papers, "--int8")
    assert [clf.predict_coreness(t, a) for t, a in papers] == expected


def test_w8a8_scores_equal_the_commands_or_both_refuse(cli, default_clf, papers, tmp_path):
    try:
        clf = Classifier(w8a8=True)
    except ValueError as e:  # a CPU without AVX512-VNNI: the command refuses too
        assert "AVX512-VNNI" in str(e)
        r = subprocess.run([str(cli), "predict-coreness", "x", "y", "--w8a8"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "AVX512-VNNI" in r.stderr
        return
    assert clf.w8a8 and not clf.int8 and not clf.fp16
    got = [clf.predict_coreness(t, a) for t, a in papers]
    assert got == cli_predict(cli, tmp_path, papers, "--w8a8")
    # int8 products are used (scores move), and they stay near float32
    diffs = [abs(g["scores"][k] - f["scores"][k])
             for g, f in zip(got, (default_clf.predict_coreness(t, a) for t, a in papers))
             for k in g["scores"]]
    assert 0 < max(diffs) < 0.1


def test_w8a8_without_vnni_is_refused_with_the_reason():
    # INSPIRE_NO_VNNI hides the instructions (read once per process, so in a child process)
    code = ("from inspire_classifier import Classifier\n"
            "try:\n    Classifier(w8a8=True)\nexcept ValueError as e:\n    print('refused:', e)\n")
    env = dict(os.environ, INSPIRE_NO_VNNI="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:") and "AVX512-VNNI" in r.stdout


def test_padded_batch_is_close_to_one_at_a_time(default_clf, papers):
    single = [default_clf.predict_coreness(t, a) for t, a in papers]
    padded = default_clf.predict_coreness_batch(papers, batch=4)
    assert [p["prediction"] for p in padded] == [p["prediction"] for p in single]
    for p, q in zip(padded, single):
        for k in q["scores"]:
            assert abs(p["scores"][k] - q["scores"][k]) < 1e-5
    with pytest.raises(ValueError, match="batch"):
        default_clf.predict_coreness_batch(papers, batch=0)
    with pytest.raises(TypeError, match="batch"):
        default_clf.predict_coreness_batch(papers, batch="4")


def test_batch_equals_one_at_a_time(default_clf, papers):
    single = [default_clf.predict_coreness(t, a) for t, a in papers]
    assert default_clf.predict_coreness_batch(papers) == single
    as_dicts = [{"title": t, "abstract": a, "id": i} for i, (t, a) in enumerate(papers)]
    assert default_clf.predict_coreness_batch(as_dicts, threads=1) == single
    assert default_clf.predict_coreness_batch(iter(as_dicts), threads=3) == single
    assert Classifier(threads=2).predict_coreness_batch(papers) == single
    assert default_clf.predict_coreness_batch([]) == []


def test_threads_give_the_answers_of_one_thread(default_clf, papers):
    single = [default_clf.predict_coreness(t, a) for t, a in papers]
    work = list(range(len(papers))) * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: (i, default_clf.predict_coreness(*papers[i])), work))
        batches = list(pool.map(lambda k: default_clf.predict_coreness_batch(papers, threads=2), range(4)))
    for i, r in got:
        assert r == single[i]
    for b in batches:
        assert b == single


def test_the_gil_is_released_while_computing(default_clf, papers):
    long_papers = [p for p in papers if len(p[1]) > 500] * 4
    window = {}

    def work():
        window["start"] = time.perf_counter()
        default_clf.predict_coreness_batch(long_papers, threads=1)
        window["end"] = time.perf_counter()

    t = threading.Thread(target=work)
    ticks = []
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    start, end = window["start"], window["end"]
    assert end - start > 0.05, "the batch is too short to measure"
    middle = [x for x in ticks if start + 0.3 * (end - start) < x < start + 0.7 * (end - start)]
    # With the GIL held during the C++ call this thread could not run at all in that window.
    assert len(middle) > 100


def test_learner_h5_loads_and_matches_fastai(learner_clf):
    """The original's exported learner (written by fastai 2.7, tools/reference) predicts as
    fastai did: fastai's probabilities through INSPIRE's temperature softmax."""
    assert learner_clf.labels == LABELS  # fastai's classes "0","1","2"
    ref = json.loads((TORCH_FIXTURES / "classifier.predictions.json").read_text())
    assert learner_clf.vocab_size == ref["vocab_len"]
    for p in ref["predictions"]:
        title, abstract = p["text"].split(" <ENDTITLE> ", 1)
        r = learner_clf.predict_coreness(title, abstract)
        e = [math.exp(x / 0.25) for x in p["probs"]]
        expected = [x / sum(e) for x in e]
        for k, label in enumerate(LABELS):
            assert r["scores"][label] == pytest.approx(expected[k], abs=1e-5)
        assert r["prediction"] == LABELS[max(range(3), key=lambda k: p["probs"][k])]


def test_learner_scores_equal_the_command_on_the_imported_bundle(learner_clf, cli, papers, tmp_path):
    bundle = tmp_path / "imported.safetensors"
    run_cli(cli, "import-fastai", "--learner", str(TORCH_FIXTURES / "classifier.h5"), "-o", str(bundle))
    expected = cli_predict(cli, tmp_path, papers, "--model", str(bundle))
    assert [learner_clf.predict_coreness(t, a) for t, a in papers] == expected
    # The bundle itself, given as a PathLike, loads to the same model.
    from_bundle = Classifier(model_path=bundle)
    assert from_bundle.source == str(bundle)
    assert from_bundle.predict_coreness_batch(papers) == expected


def test_a_learner_under_another_name_is_recognised(learner_clf, tmp_path, papers):
    renamed = tmp_path / "exported_learner"  # no extension: recognised by its zip signature
    renamed.write_bytes((TORCH_FIXTURES / "classifier.h5").read_bytes())
    assert Classifier(renamed).predict_coreness(*papers[0]) == learner_clf.predict_coreness(*papers[0])


@pytest.mark.parametrize(
    "name,message",
    [
        # Protocol 0 is not a PyTorch checkpoint's format: refused before any opcode runs.
        ("hostile_os_system_p0.pkl", "not a PyTorch checkpoint"),
        ("hostile_os_system_p2.pkl", "refusing to call posix.system"),
        ("hostile_os_system_p4.pkl", "refusing to call posix.system"),
        ("hostile_eval.pkl", "refusing to call builtins.eval"),
        ("hostile_subprocess.pkl", "refusing to call subprocess.check_call"),
        ("hostile_getattr.pkl", "refusing to call builtins.__import__"),
        ("hostile_zip.pt", "refusing to call"),
    ],
)
def test_a_hostile_pickle_is_refused_and_runs_nothing(name, message, tmp_path):
    if HOSTILE_MARKER.exists():
        HOSTILE_MARKER.unlink()
    # Under the original's learner name too: the refusal must not depend on the extension.
    for path in (TORCH_FIXTURES / name, tmp_path / "classifier.h5"):
        if path.parent == tmp_path:
            path.write_bytes((TORCH_FIXTURES / name).read_bytes())
        with pytest.raises(ValueError, match=message) as info:
            Classifier(model_path=path)
        assert str(path) in str(info.value)
        assert not HOSTILE_MARKER.exists(), "the pickle's payload ran"


def test_missing_and_corrupt_models(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        Classifier(model_path=missing)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        Classifier(model_path=str(tmp_path / "nope.h5"))
    with pytest.raises(IsADirectoryError):
        Classifier(model_path=tmp_path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="garbage.safetensors"):
        Classifier(model_path=garbage)
    learner = (TORCH_FIXTURES / "classifier.h5").read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(learner[: len(learner) // 2])
    with pytest.raises(ValueError, match="truncated.h5"):
        Classifier(model_path=truncated)
    # A language-model checkpoint is not a classifier.
    with pytest.raises(ValueError, match="encoder.h5"):
        Classifier(model_path=TORCH_FIXTURES / "encoder.h5")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.safetensors"):
        Classifier(model_path=empty)


def test_bad_arguments_raise_the_right_exceptions(default_clf):
    with pytest.raises(TypeError, match="model_path"):
        Classifier(model_path=42)
    with pytest.raises(ValueError, match="model_path is empty"):
        Classifier(model_path="")
    with pytest.raises(TypeError, match="fp16"):
        Classifier(fp16="yes")
    with pytest.raises(TypeError, match="int8"):
        Classifier(int8=1)
    with pytest.raises(ValueError, match="not both"):
        Classifier(fp16=True, int8=True)
    with pytest.raises(TypeError, match="w8a8"):
        Classifier(w8a8="yes")
    with pytest.raises(ValueError, match="w8a8"):
        Classifier(int8=True, w8a8=True)
    with pytest.raises(TypeError, match="threads"):
        Classifier(threads="2")
    with pytest.raises(ValueError, match="threads"):
        Classifier(threads=-1)
    with pytest.raises(TypeError):
        Classifier(None, False)  # fp16 and threads are keyword-only
    with pytest.raises(TypeError, match="title"):
        default_clf.predict_coreness(None, "abstract")
    with pytest.raises(TypeError, match="abstract"):
        default_clf.predict_coreness("title", 3.5)
    with pytest.raises(TypeError):
        default_clf.predict_coreness("title only")
    # Text that is not text: the C++ message names the field and the byte offset.
    with pytest.raises(ValueError, match="abstract.*offset|offset.*abstract") as info:
        default_clf.predict_coreness("title", b"ok \xff\xfe bad")
    assert "UTF-8" in str(info.value)
    with pytest.raises(ValueError, match="title"):
        default_clf.predict_coreness("lone surrogate \ud800", "abstract")
    # Batches name the bad paper.
    with pytest.raises(TypeError, match="papers"):
        default_clf.predict_coreness_batch(7)
    with pytest.raises(TypeError, match="papers"):
        default_clf.predict_coreness_batch("title and abstract")
    with pytest.raises(TypeError, match=r"papers\[1\]"):
        default_clf.predict_coreness_batch([("t", "a"), 5])
    with pytest.raises(ValueError, match=r"papers\[1\]: missing key 'abstract'"):
        default_clf.predict_coreness_batch([("t", "a"), {"title": "t"}])
    with pytest.raises(ValueError, match=r"papers\[0\]: expected a \(title, abstract\) pair"):
        default_clf.predict_coreness_batch([("t", "a", "extra")])
    with pytest.raises(TypeError, match=r"papers\[0\] abstract"):
        default_clf.predict_coreness_batch([("t", None)])
    with pytest.raises(ValueError, match=r"papers\[1\] title is not valid UTF-8"):
        default_clf.predict_coreness_batch([("t", "a"), (b"\xc3(", "a")])
    with pytest.raises(TypeError, match="threads"):
        default_clf.predict_coreness_batch([("t", "a")], threads=1.5)


def test_bytes_are_taken_as_utf8(default_clf):
    t, a = "Ωμέγα baryons", "résumé of the résultats"
    assert default_clf.predict_coreness(t.encode(), a.encode()) == default_clf.predict_coreness(t, a)


def test_types_and_docs_are_installed():
    pkg = Path(inspire_classifier.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_core.pyi").is_file()
    assert "predict_coreness" in (Classifier.__doc__ or "") or Classifier.predict_coreness.__doc__
    assert "scores" in (Classifier.predict_coreness.__doc__ or "")
    assert inspire_classifier.__version__.count(".") == 2
    assert repr(Classifier()).startswith("Classifier(source='embedded:")
