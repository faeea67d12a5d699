"""INSPIRE's paper classifier (core / non_core / rejected), backed by a C++ library.

A drop-in replacement for the original ``inspire_classifier`` package's prediction API, with no
torch, fastai or NumPy::

    from inspire_classifier import Classifier
    classifier = Classifier()                      # the embedded default model
    classifier = Classifier(model_path="classifier.h5")   # or the original's exported learner
    classifier.predict_coreness(title, abstract)
    # {'prediction': 'core', 'scores': {'rejected': 0.0177, 'non_core': 0.0177, 'core': 0.9647}}

The scores are the ``inspire-classifier predict-coreness`` command's (the same float values).
Document vectors (a model's encoder output, for linear models or similarity search) come from
:class:`Embedder`. Training and dataset creation are functions too: :func:`train` (the ULMFiT pipeline) and
:func:`create_dataset` (gather labeled data from INSPIRE); their progress goes to the logger
``"inspire_classifier"`` and to an optional callback.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "Classifier",
    "Embedder",
    "Prediction",
    "Paper",
    "has_default_model",
    "train",
    "create_dataset",
    "__version__",
]


def _check_cpu() -> None:
    # The library is compiled for x86-64-v3 (AVX2 + FMA) like the command: on an older CPU,
    # say so instead of dying with SIGILL on import.
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    missing = [x for x in ("avx2", "fma") if x not in flags]
                    if missing:
                        raise ImportError(
                            "inspire_classifier: this build needs an x86-64-v3 CPU (AVX2 + FMA); "
                            "this CPU lacks " + ", ".join(missing) + ". Rebuild for your CPU with "
                            "CMAKE_ARGS='-DINSPIRE_ARCH=x86-64' pip install ."
                        )
                    return
    except OSError:
        return


_check_cpu()

from . import _core  # noqa: E402
from ._pipeline import create_dataset, train  # noqa: E402

__version__: str = _core.__version__

#: What predict_coreness returns: {'prediction': label, 'scores': {label: score, ...}}.
Prediction = Dict[str, Any]
#: One paper for predict_coreness_batch: a (title, abstract) pair or a mapping with those keys.
Paper = Union[Tuple[Union[str, bytes], Union[str, bytes]], Mapping[str, Union[str, bytes]]]


def has_default_model() -> bool:
    """True when this build embeds a default model (``Classifier()`` without a path)."""
    return _core.has_default_model()


def _text(value: object, what: str) -> bytes:
    """A title or abstract as UTF-8 bytes; TypeError for anything but str or bytes."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: not text
            raise ValueError(f"{what} is not valid Unicode text: {e}") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str (or UTF-8 bytes), got {type(value).__name__}")


def _check_threads(threads: object) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, got {type(threads).__name__}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = all cores), got {threads}")
    return threads


def _check_batch(batch: object) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int, got {type(batch).__name__}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    return batch


def _pairs(papers: object) -> List[Tuple[bytes, bytes]]:
    """Papers ((title, abstract) pairs or mappings) as (title, abstract) UTF-8 bytes pairs."""
    if isinstance(papers, (str, bytes, Mapping)):
        raise TypeError("papers must be a list of (title, abstract) pairs or dicts")
    try:
        items = list(papers)
    except TypeError:
        raise TypeError(
            f"papers must be an iterable of papers, got {type(papers).__name__}"
        ) from None
    pairs: List[Tuple[bytes, bytes]] = []
    for i, paper in enumerate(items):
        if isinstance(paper, Mapping):
            missing = [k for k in ("title", "abstract") if k not in paper]
            if missing:
                raise ValueError(f"papers[{i}]: missing key {missing[0]!r}")
            title, abstract = paper["title"], paper["abstract"]
        elif isinstance(paper, Sequence) and not isinstance(paper, (str, bytes)):
            if len(paper) != 2:
                raise ValueError(
                    f"papers[{i}]: expected a (title, abstract) pair, got {len(paper)} items"
                )
            title, abstract = paper[0], paper[1]
        else:
            raise TypeError(
                f"papers[{i}] must be a (title, abstract) pair or a dict, "
                f"got {type(paper).__name__}"
            )
        t = _text(title, f"papers[{i}] title")
        a = _text(abstract, f"papers[{i}] abstract")
        for what, given, b in (("title", title, t), ("abstract", abstract, a)):
            if not isinstance(given, str):  # bytes: name the paper if not UTF-8
                try:
                    b.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"papers[{i}] {what} is not valid UTF-8: {e}") from None
        pairs.append((t, a))
    return pairs


class Classifier:
    """A loaded INSPIRE classifier.

    Args:
        model_path: the model to load: the original's exported fastai learner (``.h5`` /
            ``.pkl``; read by a safe in-memory importer that never runs code from the file), a
            model bundle (``.safetensors``, e.g. written by ``inspire-classifier train`` or
            ``import-fastai``), or None for the default model embedded in this package.
        fp16: keep the LSTMs' recurrent weights in half precision (faster single-paper
            predictions; scores differ from float32 by about 1e-4).
        int8: keep them in int8 with one scale per row (faster still; scores differ from
            float32 by up to about 1e-2). Not together with ``fp16``.
        w8a8: int8 weights *and* int8 activations in the LSTMs' products (AVX512-VNNI; the
            fastest CPU mode, about 5x float32 for one paper; scores differ from float32 by up
            to about 3e-2, and one decision of 508 changed on INSPIRE's ``valid`` split). Raises
            ValueError on a CPU without AVX512-VNNI. Not together with ``fp16`` or ``int8``.
        threads: worker threads for :meth:`predict_coreness_batch` (0 = all cores).

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: the file is not a valid model (corrupt, truncated, hostile pickle, wrong kind).
        TypeError: an argument has the wrong type.

    A Classifier is immutable: any number of threads may call its methods at once (the GIL is
    released while it computes).
    """

    def __init__(
        self,
        model_path: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        fp16: bool = False,
        int8: bool = False,
        w8a8: bool = False,
        threads: int = 0,
    ) -> None:
        if model_path is None:
            path = ""
        elif isinstance(model_path, (str, os.PathLike)):
            path = os.fspath(model_path)
            if not isinstance(path, str):
                raise TypeError("model_path must be a str path, not bytes")
            if path == "":
                raise ValueError("model_path is empty (pass None for the embedded default model)")
        else:
            raise TypeError(
                f"model_path must be a str, an os.PathLike or None, got {type(model_path).__name__}"
            )
        if not isinstance(fp16, bool):
            raise TypeError(f"fp16 must be a bool, got {type(fp16).__name__}")
        if not isinstance(int8, bool):
            raise TypeError(f"int8 must be a bool, got {type(int8).__name__}")
        if not isinstance(w8a8, bool):
            raise TypeError(f"w8a8 must be a bool, got {type(w8a8).__name__}")
        if fp16 and int8:
            raise ValueError("choose fp16 or int8 recurrent weights, not both")
        if w8a8 and (fp16 or int8):
            raise ValueError("w8a8 is its own precision: not together with fp16 or int8")
        self._threads = _check_threads(threads)
        self._fp16 = fp16
        self._int8 = int8
        self._w8a8 = w8a8
        self._model = _core.Model(path, fp16, int8, w8a8)

    @property
    def labels(self) -> Tuple[str, ...]:
        """The class names in class-index order, e.g. ('rejected', 'non_core', 'core')."""
        return self._model.labels

    @property
    def source(self) -> str:
        """Where the model came from: its path, or 'embedded:<name>'."""
        return self._model.source

    @property
    def temperature(self) -> float:
        """The temperature of INSPIRE's score softmax (0.25)."""
        return self._model.temperature

    @property
    def vocab_size(self) -> int:
        """The number of tokens in the model's vocabulary."""
        return self._model.vocab_size

    @property
    def n_members(self) -> int:
        """Classifiers in the model: 1, or an ensemble's size."""
        return self._model.n_members

    @property
    def fp16(self) -> bool:
        return self._fp16

    @property
    def int8(self) -> bool:
        return self._int8

    @property
    def w8a8(self) -> bool:
        return self._w8a8

    @property
    def threads(self) -> int:
        return self._threads

    def __repr__(self) -> str:
        return (
            f"Classifier(source={self.source!r}, labels={self.labels!r}, "
            f"fp16={self._fp16}, int8={self._int8}, w8a8={self._w8a8}, threads={self._threads})"
        )

    def predict_coreness(self, title: Union[str, bytes], abstract: Union[str, bytes]) -> Prediction:
        """Classifies one paper exactly as INSPIRE's classifier does.

        Returns ``{'prediction': 'core', 'scores': {'rejected': s0, 'non_core': s1, 'core': s2}}``
        (the original's keys, in that order; the scores are the command's float values).

        Raises:
            TypeError: title or abstract is not str (or bytes).
            ValueError: the text is not valid UTF-8 / Unicode.
        """
        return self._model.predict(_text(title, "title"), _text(abstract, "abstract"))

    def predict_coreness_batch(
        self, papers: Iterable[Paper], *, threads: Optional[int] = None, batch: int = 1
    ) -> List[Prediction]:
        """Classifies many papers in parallel (GIL released); results in input order.

        Each paper is a ``(title, abstract)`` pair or a mapping with ``"title"`` and
        ``"abstract"`` keys. Each result equals :meth:`predict_coreness` of that paper.
        ``threads`` overrides the Classifier's setting for this call (0 = all cores).
        ``batch`` > 1 runs up to that many papers padded together through the model (as
        ``predict --batch``): faster for bulk work, scores within about 1e-6 of one at a time.
        """
        n_threads = self._threads if threads is None else _check_threads(threads)
        batch = _check_batch(batch)
        pairs = _pairs(papers)
        return self._model.predict_batch(pairs, n_threads, batch)


class Embedder:
    """Document vectors: for each paper, the vector a classifier's head reads.

    ``[last, max, mean]`` of the encoder's last LSTM layer over the pooled tokens: 3 x emb_sz
    floats (1200 at INSPIRE's size), as ``inspire-classifier embed`` writes them. The model may
    be a language model (its encoder never saw a label), an encoder, or a classifier
    (``member`` K of an ensemble). Papers are tokenized exactly as :class:`Classifier` does.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: the file is not a valid model of those kinds, or has no such member.
        TypeError: an argument has the wrong type.
    """

    def __init__(self, model_path: Union[str, "os.PathLike[str]"], *, member: int = 0) -> None:
        if not isinstance(model_path, (str, os.PathLike)):
            raise TypeError(
                f"model_path must be a str or an os.PathLike, got {type(model_path).__name__}"
            )
        path = os.fspath(model_path)
        if not isinstance(path, str):
            raise TypeError("model_path must be a str path, not bytes")
        if path == "":
            raise ValueError("model_path is empty")
        if isinstance(member, bool) or not isinstance(member, int):
            raise TypeError(f"member must be an int, got {type(member).__name__}")
        if member < 0:
            raise ValueError(f"member must be >= 0, got {member}")
        self._model = _core.EmbedModel(path, member)

    @property
    def dim(self) -> int:
        """The length of every vector (3 x the model's emb_sz)."""
        return self._model.dim

    @property
    def kind(self) -> str:
        """The bundle's kind: ``'lm'``, ``'encoder'`` or ``'classifier'``."""
        return self._model.kind

    def __repr__(self) -> str:
        return f"Embedder(kind={self.kind!r}, dim={self.dim})"

    def embed(self, title: Union[str, bytes], abstract: Union[str, bytes]) -> List[float]:
        """One paper's vector (a list of :attr:`dim` floats)."""
        return self._model.embed_batch([(_text(title, "title"), _text(abstract, "abstract"))], 1)[0]

    def embed_batch(self, papers: Iterable[Paper], *, batch: int = 32) -> List[List[float]]:
        """Many papers' vectors, in input order (GIL released; up to ``batch`` papers padded
        together through the model, each as if alone to about 1e-6). Papers as for
        :meth:`Classifier.predict_coreness_batch`."""
        return self._model.embed_batch(_pairs(papers), _check_batch(batch))

