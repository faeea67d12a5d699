"""inspire_classifier.train and inspire_classifier.create_dataset (python/inspire_classifier/_pipeline.py).

The training run is tiny (preset "tiny", 30 papers, one thread, one epoch per stage): seconds.
create_dataset is tested without network: argument checks and a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

import inspire_classifier as ic

from conftest import LABELED

TINY = {"max_vocab": 300, "lm_epochs": 1, "clas_epochs": 1, "clas_lr": 1e-2}


def write_sample(path: Path, n: int) -> Path:
    """The first n train-split records of the shared labeled data (title, abstract, label)."""
    if not LABELED.exists():
        pytest.fail(f"{LABELED} is missing: the tests need the shared labeled data")
    rows = []
    with LABELED.open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("split") != "train":
                continue
            rows.append({"title": rec["title"], "abstract": rec["abstract"], "label": rec["label"]})
            if len(rows) == n:
                break
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_train_tiny_model_loads_predicts_and_reports_progress(tmp_path, caplog):
    data = write_sample(tmp_path / "sample.jsonl", 30)
    with data.open("a", encoding="utf-8") as f:
        f.write("not json\n")  # skipped with a warning (line 31)
    calls = []

    def progress(stage, epoch, metrics):
        assert isinstance(stage, str) and isinstance(epoch, int) and isinstance(metrics, dict)
        calls.append((stage, epoch, dict(metrics)))

    with caplog.at_level(logging.INFO, logger="inspire_classifier"):
        res = ic.train(data, out_dir=tmp_path / "out", preset="tiny", recipe=TINY, threads=1,
                       progress=progress)
    model = Path(res["model_path"])
    assert model == tmp_path / "out" / "classifier" / "classifier.safetensors"
    assert model.is_file()
    assert res["lm"]["train_docs"] == 24 and res["lm"]["valid_docs"] == 6
    assert res["classifier"]["train_docs"] == 24 and res["classifier"]["valid_docs"] == 6
    assert 0.0 <= res["classifier"]["valid_accuracy"] <= 1.0
    assert res["pretrain"] is None
    assert res["recipe"]["max_vocab"] == 300 and res["recipe"]["lm_epochs"] == 1
    # LM from scratch: its unfrozen stage only (1 epoch); classifier: 4 unfreezing stages.
    assert len(calls) == 1 + 4, calls
    assert all(c[2] for c in calls), "every epoch reports metrics"
    # The library's log lines went to the logger.
    messages = [r.getMessage() for r in caplog.records if r.name == "inspire_classifier"]
    assert any(m.startswith("data: 24 train / 6 valid") for m in messages), messages
    assert any(m.startswith("vocab: ") for m in messages), messages
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sample.jsonl:31" in m and "malformed JSON" in m for m in warnings), messages

    clf = ic.Classifier(model)
    assert clf.labels == ("rejected", "non_core", "core")
    out = clf.predict_coreness("Measurement of the top quark mass", "We measure the top quark mass.")
    assert out["prediction"] in clf.labels
    assert abs(sum(out["scores"].values()) - 1.0) < 1e-4


def test_train_progress_exception_stops_training(tmp_path):
    data = write_sample(tmp_path / "sample.jsonl", 30)

    class Stop(Exception):
        pass

    def progress(stage, epoch, metrics):
        raise Stop(f"stopped at {stage} {epoch}")

    with pytest.raises(Stop, match="stopped at"):
        ic.train(data, out_dir=tmp_path / "out", preset="tiny", recipe=TINY, threads=1,
                 progress=progress)
    assert not (tmp_path / "out" / "classifier" / "classifier.safetensors").exists()


def test_train_bad_recipe_field_raises_value_error_naming_it(tmp_path):
    data = write_sample(tmp_path / "sample.jsonl", 5)
    with pytest.raises(ValueError, match="no_such_field"):
        ic.train(data, out_dir=tmp_path / "out", preset="tiny", recipe={"no_such_field": 1})
    with pytest.raises(ValueError, match="lm_epochs"):
        ic.train(data, out_dir=tmp_path / "out", preset="tiny", recipe={"lm_epochs": "many"})
    with pytest.raises(ValueError, match="nonexistent"):
        ic.train(data, out_dir=tmp_path / "out", preset="nonexistent")
    assert not (tmp_path / "out").exists()


def test_train_argument_errors(tmp_path):
    data = write_sample(tmp_path / "sample.jsonl", 5)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        ic.train(tmp_path / "missing.jsonl", out_dir=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ic.train(data, out_dir=tmp_path / "out", pretrained=tmp_path / "nope.safetensors")
    with pytest.raises(TypeError):
        ic.train(data, out_dir=tmp_path / "out", recipe=[("lm_epochs", 1)])
    with pytest.raises(TypeError):
        ic.train(data, out_dir=tmp_path / "out", progress="not callable")
    with pytest.raises(TypeError):
        ic.train(data, out_dir=tmp_path / "out", threads="2")
    with pytest.raises(ValueError):
        ic.train([], out_dir=tmp_path / "out")
    with pytest.raises(TypeError):
        ic.train(data, out_dir=tmp_path / "out", device=0)
    with pytest.raises(ValueError, match="cpu, cuda or cuda:N"):
        ic.train(data, out_dir=tmp_path / "out", device="gpu")


def test_train_on_an_unusable_device_fails_before_training(tmp_path, caplog):
    # This wheel is built without CUDA (or the machine has no GPU): refused with the library's
    # message before any data is read (no stage logs its data or vocabulary).
    data = write_sample(tmp_path / "sample.jsonl", 5)
    caplog.set_level(logging.INFO, logger="inspire_classifier")
    with pytest.raises(ValueError, match="cuda"):
        ic.train(data, out_dir=tmp_path / "out", preset="tiny", device="cuda")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "vocab" not in logged and "data:" not in logged, logged


def test_train_bad_data_raises_value_error(tmp_path, caplog):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"title": "t", "abstract": "a", "label": "maybe"}\n', encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="inspire_classifier"):
        with pytest.raises(ValueError, match=r"bad.jsonl:2: unknown label 'maybe'"):
            ic.train(bad, out_dir=tmp_path / "out", preset="tiny", threads=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"date_from": "2020-13", "date_to": "2020-12"}, "date_from"),
        ({"date_from": "2020-01", "date_to": "20x0"}, "date_to"),
        ({"date_from": "2021-01", "date_to": "2020-12"}, "2021"),
        ({"date_from": "2020-01"}, "dates"),
        ({"year_from": 2020, "month_from": 13, "year_to": 2020}, "month_from"),
        ({"year_from": 2020, "date_from": "2020", "date_to": "2020"}, "not both"),
        ({"date_from": "2020", "date_to": "2020", "source": "elsewhere"}, "source"),
        ({"date_from": "2020", "date_to": "2020", "source": "opensearch"}, "es_url"),
        ({"date_from": "2020", "date_to": "2020", "es_url": "http://x"}, "opensearch"),
    ],
)
def test_create_dataset_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ic.create_dataset(tmp_path / "out.jsonl", **kwargs)
    assert not (tmp_path / "out.jsonl").exists()


def test_create_dataset_credentials_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ES_USERNAME", "user")
    monkeypatch.delenv("ES_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="ES_PASSWORD"):
        ic.create_dataset(tmp_path / "o.jsonl", source="opensearch", es_url="http://127.0.0.1:9",
                          date_from="2020", date_to="2020")
    with pytest.raises(TypeError):
        ic.create_dataset(tmp_path / "o.jsonl", date_from=2020, date_to="2020")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_create_dataset_unreachable_url_names_it(tmp_path):
    port = closed_port()
    url = f"http://127.0.0.1:{port}/api"
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}/api/literature"):
        ic.create_dataset(tmp_path / "out.jsonl", api_url=url, date_from="2020-01",
                          date_to="2020-01", retries=1, timeout=5)
    assert not (tmp_path / "out.jsonl").exists()  # only the partial file, kept for resume
    assert (tmp_path / "out.jsonl.partial").exists()


def test_train_and_create_dataset_are_documented():
    assert "train" in ic.__all__ and "create_dataset" in ic.__all__
    assert "progress(stage, epoch, metrics)" in (ic.train.__doc__ or "")
    assert "ES_USERNAME" in (ic.create_dataset.__doc__ or "")
