"""The embedder protocol and the factory that picks one from configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from libs.runtime.config import Config

__all__ = ["Embedder", "build_embedder"]

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def model_id(self) -> str:
        """Identifies model *and* preprocessing; part of the embedding cache key."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed a batch; returns an array of shape ``(len(texts), dim)``. Blocking."""
        ...


def build_embedder(config: Config) -> Embedder:
    """The embedder the configuration names."""
    if config.embedder == "openai":
        from libs.embeddings.openai_http import OpenAICompatibleEmbedder

        if not config.embedder_url:
            from libs.events.errors import InvalidInput

            raise InvalidInput("MNEMOS_EMBEDDER_URL is required for the openai embedder")
        return OpenAICompatibleEmbedder(
            base_url=config.embedder_url, model=config.embedder_model,
            dim=config.embedder_dim, api_key=config.embedder_api_key,
        )
    from libs.embeddings.minilm import MiniLMOnnxEmbedder

    return MiniLMOnnxEmbedder.shared()
