"""Embedders: text to unit vectors, behind one small protocol.

- :class:`MiniLMOnnxEmbedder` (default): all-MiniLM-L6-v2, int8 ONNX, fully offline, 384 dims.
- :class:`OpenAICompatibleEmbedder`: any ``POST /v1/embeddings`` server.

Vectors are L2-normalised so cosine distance equals 1 - dot product.
"""

from libs.embeddings.base import Embedder, build_embedder
from libs.embeddings.minilm import MiniLMOnnxEmbedder
from libs.embeddings.openai_http import OpenAICompatibleEmbedder

__all__ = ["Embedder", "MiniLMOnnxEmbedder", "OpenAICompatibleEmbedder", "build_embedder"]
