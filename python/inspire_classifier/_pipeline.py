"""Training (the ULMFiT pipeline) and create-dataset as Python functions.

Both call the C++ library (ulmfit/pipeline.h, harvest/harvest.h) with the GIL released. Progress
is shown the Python way: log lines go to the :mod:`logging` logger ``"inspire_classifier"``, and
an optional callback is called after every epoch (train) or page (create_dataset).
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Union

from . import _core

logger = logging.getLogger("inspire_classifier")

PathLike = Union[str, "os.PathLike[str]"]
#: train's progress callback: (stage, epoch, metrics), e.g. ("lm", 1, {"valid_loss": 4.2, ...}).
TrainProgress = Callable[[str, int, Dict[str, float]], Any]
#: create_dataset's progress callback: (counts so far, window "2020-01-01..2020-01-31").
HarvestProgress = Callable[[Dict[str, Any], str], Any]


def _path(value: object, what: str) -> str:
    if isinstance(value, (str, os.PathLike)):
        p = os.fspath(value)
        if isinstance(p, str):
            if p == "":
                raise ValueError(f"{what} is empty")
            return p
    raise TypeError(f"{what} must be a str or os.PathLike path, got {type(value).__name__}")


def _paths(value: object, what: str, must_exist: bool) -> list:
    if isinstance(value, (str, os.PathLike)):
        items: Sequence[object] = [value]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
    else:
        raise TypeError(f"{what} must be a path or a list of paths, got {type(value).__name__}")
    out = []
    for i, v in enumerate(items):
        p = _path(v, f"{what}[{i}]")
        if must_exist and not os.path.exists(p):
            raise FileNotFoundError(f"{what}: {p}: no such file")
        out.append(p)
    return out


def _int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def _callable(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{what} must be callable or None, got {type(value).__name__}")


def _log_line(line: str) -> None:
    if line.startswith("warning") or "warning:" in line:
        logger.warning("%s", line)
    else:
        logger.info("%s", line)


def train(
    data: Union[PathLike, Iterable[PathLike]],
    *,
    out_dir: PathLike,
    lm_data: Union[PathLike, Iterable[PathLike]] = (),
    pretrain_data: Union[PathLike, Iterable[PathLike]] = (),
    pretrained: Optional[PathLike] = None,
    preset: str = "original",
    recipe: Optional[Mapping[str, Any]] = None,
    resume: bool = False,
    progress: Optional[TrainProgress] = None,
    threads: int = 0,
    max_steps: int = 0,
    device: str = "cpu",
) -> Dict[str, Any]:
    """Trains a classifier with the whole ULMFiT pipeline, as ``inspire-classifier train``.

    [pretrain on ``pretrain_data``] -> fine-tune the language model on ``data`` (+ ``lm_data``)
    -> classifier with gradual unfreezing, into ``out_dir/pretrain``, ``out_dir/lm`` and
    ``out_dir/classifier`` (docs/pipeline.md).

    Args:
        data: labeled JSON Lines / CSV file(s) (``create_dataset``'s output, for instance).
        out_dir: the folder for checkpoints and models.
        lm_data: extra unlabeled HEP text for LM fine-tuning.
        pretrain_data: general-English text: pretrain an LM from scratch first.
        pretrained: or start from this pretrained LM bundle (not with ``pretrain_data``).
        preset: the sizes and schedule to start from: "original" (INSPIRE's run), "small",
            "tiny".
        recipe: Recipe fields overriding the preset, e.g. ``{"lm_epochs": 2, "seed": 7}``
            (docs/pipeline.md lists them); an unknown field or bad value raises ValueError.
        resume: continue an interrupted run from its checkpoints.
        progress: called after every epoch as ``progress(stage, epoch, metrics)``; an exception
            it raises stops training and is re-raised.
        threads: compute threads (0 = leave the library's setting: all cores).
        max_steps: stop each training run after this many batches (0 = no limit; for smoke
            tests).
        device: where the models train: "cpu", or "cuda" / "cuda:N" (a library built with
            CUDA and a GPU; cuda/README.md). The trained model serves on the CPU.

    Returns:
        ``{"model_path": ".../classifier/classifier.safetensors", "out_dir", "recipe" (dict),
        "classifier": {"valid_accuracy", "valid_macro_f1", "best_macro_f1", "best_stage",
        "best_epoch", "steps", "model_path", "last_model_path", "train_docs", "valid_docs"},
        "lm": {...} or None, "pretrain": {...} or None}``. The model loads in
        :class:`Classifier`.

    Raises:
        FileNotFoundError: an input file does not exist.
        ValueError: bad recipe, preset, data or device (the library's message; a device this
            library cannot use is refused before anything is read).
        TypeError: an argument has the wrong type.

    Log lines (data sizes, vocabulary, stages, warnings) go to the logger "inspire_classifier".
    """
    data_paths = _paths(data, "data", True)
    if not data_paths:
        raise ValueError("data: give at least one labeled file")
    out = _path(out_dir, "out_dir")
    lm_paths = _paths(lm_data, "lm_data", True)
    pre_paths = _paths(pretrain_data, "pretrain_data", True)
    pre = ""
    if pretrained is not None:
        pre = _path(pretrained, "pretrained")
        if not os.path.exists(pre):
            raise FileNotFoundError(f"pretrained: {pre}: no such file")
        if pre_paths:
            raise ValueError("give pretrained or pretrain_data, not both")
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a str, got {type(preset).__name__}")
    recipe_json = ""
    if recipe is not None:
        if not isinstance(recipe, Mapping):
            raise TypeError(f"recipe must be a dict of Recipe fields, got {type(recipe).__name__}")
        try:
            recipe_json = json.dumps(dict(recipe))
        except (TypeError, ValueError) as e:
            raise TypeError(f"recipe: {e}") from None
    if not isinstance(resume, bool):
        raise TypeError(f"resume must be a bool, got {type(resume).__name__}")
    _callable(progress, "progress")
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__}")
    if not _DEVICE.match(device):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    provenance = json.dumps(
        {
            "command": "inspire_classifier.train (Python)",
            "data": data_paths,
            "tool": "inspire_classifier " + _core.__version__,
        }
    )
    result = _core.train(
        data_paths,
        out,
        lm_paths,
        pre_paths,
        pre,
        preset,
        recipe_json,
        resume,
        _int(threads, "threads", 0),
        _int(max_steps, "max_steps", 0),
        device,
        provenance,
        _log_line,
        progress,
    )
    result["recipe"] = json.loads(result["recipe"])
    return result


_DATE = re.compile(r"^\d{4}(-\d{2})?$")
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d{1,3})$")


def create_dataset(
    output: PathLike,
    *,
    source: str = "inspire-api",
    date_from: Optional[str] = None,
    date_to: Optional[str] = None,
    year_from: Optional[int] = None,
    month_from: Optional[int] = None,
    year_to: Optional[int] = None,
    month_to: Optional[int] = None,
    es_url: str = "",
    holdingpen_url: str = "",
    rejected: bool = True,
    api_url: str = "https://inspirehep.net/api",
    ca_cert: Optional[PathLike] = None,
    page_size: int = 9999,
    api_page_size: int = 250,
    retries: int = 6,
    timeout: float = 120.0,
    resume: bool = False,
    progress: Optional[HarvestProgress] = None,
) -> Dict[str, Any]:
    """Gathers a labeled training set from INSPIRE into JSON Lines, as
    ``inspire-classifier create-dataset`` (docs/create-dataset.md).

    Args:
        output: the JSON Lines file to write (appears atomically when the run is complete).
        source: "inspire-api" (the public REST API; core and non_core only) or "opensearch"
            (INSPIRE's cluster at ``es_url``; credentials only from the environment variables
            ES_USERNAME and ES_PASSWORD, as the command).
        date_from, date_to: first and last month, "YYYY" or "YYYY-MM", inclusive.
        year_from, month_from, year_to, month_to: the original script's spelling of the dates
            (months default to 1 and 12); not together with date_from / date_to.
        es_url, holdingpen_url: OpenSearch base URLs (holdingpen defaults to es_url).
        rejected: OpenSearch: also read holdingpen-hep's rejected workflows.
        api_url: the REST API base URL.
        ca_cert: PEM file of a private CA to trust for https.
        page_size, api_page_size: OpenSearch scroll / REST API page sizes.
        retries: attempts per request on network errors and HTTP 5xx.
        timeout: seconds allowed for each network step.
        resume: continue an interrupted run after its last finished month.
        progress: called after every page as ``progress(counts, window)``.

    Returns:
        The counts: ``{"rejected", "non_core", "core", "kept", "no_abstract", "duplicates",
        "bad", "missing", "split_windows", "requests", "windows_done", "windows_total",
        "resumed_rows", "seconds"}``.

    Raises:
        ValueError: bad options (dates, source, URLs, page sizes).
        ConnectionError: the server could not be reached (after the retries); names the URL.
        RuntimeError: another harvest failure (HTTP status, malformed answer, files).
        TypeError: an argument has the wrong type.

    Warnings go to the logger "inspire_classifier". After a failure, the same call with
    ``resume=True`` continues where it stopped.
    """
    out = _path(output, "output")
    if source not in ("inspire-api", "opensearch"):
        raise ValueError(f"source must be 'inspire-api' or 'opensearch', got {source!r}")
    legacy = any(v is not None for v in (year_from, month_from, year_to, month_to))
    if legacy:
        if date_from is not None or date_to is not None:
            raise ValueError("give either date_from/date_to or year_from/year_to, not both")
        if year_from is None or year_to is None:
            raise ValueError("year_from and year_to are both needed")
        y0, y1 = _int(year_from, "year_from", 1), _int(year_to, "year_to", 1)
        m0 = 1 if month_from is None else _int(month_from, "month_from", 1)
        m1 = 12 if month_to is None else _int(month_to, "month_to", 1)
        for what, m in (("month_from", m0), ("month_to", m1)):
            if m > 12:
                raise ValueError(f"{what} must be 1..12, got {m}")
        date_from, date_to = f"{y0:04d}-{m0:02d}", f"{y1:04d}-{m1:02d}"
    if date_from is None or date_to is None:
        raise ValueError("give the dates: date_from='YYYY[-MM]', date_to='YYYY[-MM]'")
    for what, d in (("date_from", date_from), ("date_to", date_to)):
        if not isinstance(d, str):
            raise TypeError(f"{what} must be a str 'YYYY' or 'YYYY-MM', got {type(d).__name__}")
        if not _DATE.match(d):
            raise ValueError(f"{what}: {d!r} is not a date 'YYYY' or 'YYYY-MM'")
    for what, v in (("es_url", es_url), ("holdingpen_url", holdingpen_url), ("api_url", api_url)):
        if not isinstance(v, str):
            raise TypeError(f"{what} must be a str, got {type(v).__name__}")
    username = password = ""
    if source == "opensearch":
        if not es_url:
            raise ValueError("source='opensearch' needs es_url")
        username = os.environ.get("ES_USERNAME", "")
        password = os.environ.get("ES_PASSWORD", "")
        if bool(username) != bool(password):
            raise ValueError("set both ES_USERNAME and ES_PASSWORD (or neither)")
        if not username:
            logger.warning("ES_USERNAME / ES_PASSWORD not set: connecting without authentication")
    elif es_url or holdingpen_url:
        raise ValueError("es_url / holdingpen_url are for source='opensearch'")
    ca = ""
    if ca_cert is not None:
        ca = _path(ca_cert, "ca_cert")
        if not os.path.isfile(ca):
            raise FileNotFoundError(f"ca_cert: {ca}: no such file")
    for what, v in (("rejected", rejected), ("resume", resume)):
        if not isinstance(v, bool):
            raise TypeError(f"{what} must be a bool, got {type(v).__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    _callable(progress, "progress")
    page = _int(page_size, "page_size", 1)
    api_page = _int(api_page_size, "api_page_size", 1)
    tries = _int(retries, "retries", 1)
    if page > 10000 or api_page > 1000 or tries > 100:
        raise ValueError("page_size must be <= 10000, api_page_size <= 1000, retries <= 100")
    return _core.create_dataset(
        source, date_from, date_to, out, es_url, holdingpen_url, api_url, username, password, ca,
        resume, rejected, page, api_page, tries, float(timeout),
        lambda m: logger.warning("%s", m), progress,
    )
