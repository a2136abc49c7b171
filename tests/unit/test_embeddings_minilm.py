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


def test_runs_are_bounded_by_texts_and_padded_tokens() -> None:
    embedder = MiniLMOnnxEmbedder(workers=1, chunk=4, run_tokens=512)
    lengths = [10, 10, 10, 10, 10, 200, 256, 256, 256, 600]
    order = list(range(len(lengths)))  # already shortest first
    # Four texts fill a run; 10 and 200 pad to 400; 200 and two of 256 would pad to 768, two of
    # 256 to 512; a text over the budget runs alone.
    assert embedder._chunks(order, lengths) == [[0, 1, 2, 3], [4, 5], [6, 7], [8], [9]]


def test_budgeted_runs_give_each_text_its_own_vector() -> None:
    budgeted = MiniLMOnnxEmbedder(workers=2, run_tokens=64)  # the long text alone, in any case
    reference = MiniLMOnnxEmbedder(workers=1, chunk=len(TEXTS), run_tokens=1_000_000)
    together, one_run = budgeted.embed(TEXTS), reference.embed(TEXTS)
    assert float(np.min(np.sum(together * one_run, axis=1))) > 0.9999
