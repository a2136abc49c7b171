"""Compression engines behind one interface (:mod:`.base`): extractive, facts and llm."""

from services.compressor.engines.base import (
    AsyncEngine,
    Candidate,
    CompressionRequest,
    Engine,
    EngineError,
    EngineTimeout,
    NoOutput,
)
from services.compressor.engines.extractive import ExtractiveEngine
from services.compressor.engines.facts import FactsEngine
from services.compressor.engines.llm import ChatClient, ChatMessage, ChatReply, LlmEngine

__all__ = [
    "AsyncEngine",
    "Candidate",
    "ChatClient",
    "ChatMessage",
    "ChatReply",
    "CompressionRequest",
    "Engine",
    "EngineError",
    "EngineTimeout",
    "ExtractiveEngine",
    "FactsEngine",
    "LlmEngine",
    "NoOutput",
]
