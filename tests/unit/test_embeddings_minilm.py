"""The offline embedder: length-sorted chunks run in parallel give each text the vector it gets
alone."""

from __future__ import annotations

import numpy as np
import pytest

from libs.embeddings import MiniLMOnnxEmbedder

TEXTS = [
    "The user prefers dark mode",
    "Deploys happen on Tuesdays after the standup",
    "ok",
    "The customer's renewal date is 2027-03-01, and the contract covers " * 20,
    "Alice asked about GDPR data exports in the retro",
]


@pytest.fixture(scope="module")
def embedder() -> MiniLMOnnxEmbedder:
    return MiniLMOnnxEmbedder(workers=2, chunk=2)


def test_chunked_runs_equal_one_run_per_text(embedder: MiniLMOnnxEmbedder) -> None:
    together = embedder.embed(TEXTS)  # sorted by length, 3 chunks on 2 workers
    alone = np.stack([embedder.embed([text])[0] for text in TEXTS])
    assert together.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(together * alone, axis=1))) > 0.9999  # same text, same vector
