# Stubs for the C++ extension inspire_classifier._core (python/core.cpp). Internal: use
# inspire_classifier.Classifier, which checks the arguments before calling these.
from typing import Any, Callable, Dict, List, Optional, Tuple

__version__: str

def has_default_model() -> bool: ...
def default_model_origin() -> str: ...

class Model:
    """A loaded classifier (immutable; safe to share between threads)."""

    def __init__(self, path: str, fp16: bool, int8: bool = False, w8a8: bool = False) -> None: ...
    @property
    def labels(self) -> Tuple[str, ...]: ...
    @property
    def temperature(self) -> float: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def n_members(self) -> int: ...
    @property
    def source(self) -> str: ...
    def predict(self, title: bytes, abstract: bytes) -> Dict[str, Any]: ...
    def predict_batch(self, papers: List[Tuple[bytes, bytes]], threads: int) -> List[Dict[str, Any]]: ...

class EmbedModel:
    """A loaded model for document vectors (immutable)."""

    def __init__(self, path: str, member: int) -> None: ...
    @property
    def dim(self) -> int: ...
    @property
    def kind(self) -> str: ...
    def embed_batch(self, papers: List[Tuple[bytes, bytes]], batch: int) -> List[List[float]]: ...

def train(
    data: List[str],
    out_dir: str,
    lm_data: List[str],
    pretrain_data: List[str],
    pretrained: str,
    preset: str,
    recipe_json: str,
    resume: bool,
    threads: int,
    max_steps: int,
    device: str,
    provenance: str,
    log: Optional[Callable[[str], Any]],
    progress: Optional[Callable[[str, int, Dict[str, float]], Any]],
) -> Dict[str, Any]: ...
def create_dataset(
    source: str,
    date_from: str,
    date_to: str,
    output: str,
    es_url: str,
    holdingpen_url: str,
    api_url: str,
    username: str,
    password: str,
    ca_cert: str,
    resume: bool,
    rejected: bool,
    page_size: int,
    api_page_size: int,
    retries: int,
    timeout: float,
    warn: Optional[Callable[[str], Any]],
    progress: Optional[Callable[[Dict[str, Any], str], Any]],
) -> Dict[str, Any]: ...
