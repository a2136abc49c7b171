"""An embedder for any OpenAI-compatible ``POST {base_url}/v1/embeddings`` endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from libs.embeddings.base import Vectors
from libs.events.errors import Unavailable

__all__ = ["OpenAICompatibleEmbedder"]


class OpenAICompatibleEmbedder:
    """Calls the remote endpoint in batches; asks for ``dim`` dimensions and checks them."""

    def __init__(
        self, base_url: str, model: str, dim: int, api_key: str | None = None,
        timeout_s: float = 30.0, batch: int = 128,
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/embeddings"
        self._model = model
        self._dim = dim
        self._batch = batch
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}:{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = [
            self._post(list(texts[i : i + self._batch]))
            for i in range(0, len(texts), self._batch)
        ]
        if not out:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.concatenate(out)

    def _post(self, texts: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self._model, "input": texts, "dimensions": self._dim}
        try:
            response = self._client.post(self._url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise Unavailable(f"embedder at {self._url} failed: {exc}") from exc
        items = sorted(response.json()["data"], key=lambda item: item["index"])
        vectors = np.array([item["embedding"] for item in items], dtype=np.float32)
        if vectors.shape != (len(texts), self._dim):
            raise Unavailable(f"embedder returned shape {vectors.shape}, expected "
                              f"{(len(texts), self._dim)}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: Vectors = vectors / np.clip(norms, 1e-12, None)
        return normalised
