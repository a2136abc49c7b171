"""Compressor engines on the corpus: speed, ratio, measured quality (figures only, no asserts).

Run: ``python -m tests.bench.bench_compressor_engines [--repeat N] [--similarity]``. The corpus
is ``tests/fixtures/compressor`` (hand-written texts plus package docs and stdlib docstrings,
median ~1 KB). Each engine runs alone on precomputed requests (protected spans found once, as
the compressor does); ``offline contest`` is the whole pure path per text: validation, spans,
token count, both engines, measurement of each candidate, purpose rules and the receipt. Last,
the pure context assembly over 10,000 ranked memories (corpus texts with their receipts, shuffled
per run) with a 2,000-token budget: the part of ``mnemos context`` that is not search.

Rates are per second of this process's CPU time (single-threaded work on one core) and of wall
time; on a shared machine the CPU figure is the stable one. Rates in the table never include an
embedder. Quality components are the compressor's own measurements of each engine's candidates;
``--similarity`` adds the MiniLM embedding similarity to them and times one more pass of the
offline contest with the embedder (one model run per candidate: much slower).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from libs.embeddings import MiniLMOnnxEmbedder
from services.compressor.assembly import CompressedForm, MemoryCandidate, assemble
from services.compressor.compressor import Compression, Compressor, Subject
from services.compressor.engines import (
    Candidate,
    CompressionRequest,
    EngineError,
    ExtractiveEngine,
    FactsEngine,
)
from services.compressor.quality import Embed, Measurement, measure
from services.compressor.spans import find_spans
from services.compressor.text import content_terms
from services.compressor.tokenizer import default_tokenizer

FIXTURES: Final = Path(__file__).parents[1] / "fixtures" / "compressor"
COMPONENTS: Final = ("protected_recall", "coverage", "precision", "structure", "similarity")


def load_texts() -> list[str]:
    """Every corpus text, hand-written first."""
    return [json.loads(line)["text"] for name in ("handmade.jsonl", "corpus.jsonl")
            for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


def timed(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of ``repeat`` runs of ``work``."""
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeat):
        content_terms.cache_clear()  # each run starts cold, as a new text would
        cpu, wall = time.process_time(), time.perf_counter()
        work()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall


def run_engine(compress: Callable[[CompressionRequest], Candidate],
               requests: Sequence[CompressionRequest]) -> list[Candidate | None]:
    """The engine's candidate for each request (None where it declined or failed)."""
    out: list[Candidate | None] = []
    for request in requests:
        try:
            out.append(compress(request))
        except EngineError:
            out.append(None)
    return out


def median_of(measurements: Sequence[Measurement], name: str) -> str:
    values = [v for m in measurements if (v := m.value(name)) is not None]
    return f"{statistics.median(values):.3f}" if values else "-"


def report_engine(name: str, requests: Sequence[CompressionRequest],
                  candidates: Sequence[Candidate | None], cpu: float, wall: float,
                  embed: Embed | None) -> None:
    tokens = default_tokenizer()
    pairs = [(r, c) for r, c in zip(requests, candidates, strict=True) if c is not None]
    measured = [measure(r.text, r.spans, c, embed=embed, embed_name="minilm") for r, c in pairs]
    ratios = [tokens.count(c.text) / r.input_tokens if r.input_tokens else 1.0 for r, c in pairs]
    recalls = [m.value("protected_recall") or 0.0 for m in measured]
    components = "  ".join(f"{n[:9]:>9} {median_of(measured, n)}" for n in COMPONENTS)
    print(f"{name:<16} {len(requests) / cpu:8.0f} {len(requests) / wall:8.0f} "
          f"{len(pairs):4d}/{len(requests):<4d} "
          f"{statistics.median(ratios) if ratios else float('nan'):6.3f} "
          f"{statistics.mean(recalls) if recalls else float('nan'):6.4f} "
          f"{sum(r == 1.0 for r in recalls) / max(1, len(recalls)):6.3f} "
          f"{sum(m.gates_passed for m in measured):4d}  "
          f"{statistics.median(m.score for m in measured) if measured else float('nan'):6.2f}"
          f"  {components}")


def bench_assembly(compressions: Sequence[tuple[str, Compression]], memories: int,
                   budget: int, runs: int) -> None:
    """p50/p95 of the pure assembly over ``memories`` ranked candidates, each with a receipt."""
    base = [(text, c.data) for text, c in compressions if c.data is not None]
    candidates = []
    for index in range(memories):
        text, data = base[index % len(base)]
        memory_id, version_id = f"0190a0d2-7c4e-7b2a-9f3e-{index:012d}", f"{index:032x}"
        receipt = msgspec.structs.replace(data.receipt, memory_id=memory_id,
                                          version_id=version_id)
        candidates.append(MemoryCandidate(memory_id=memory_id, version_id=version_id,
                                          original=text,
                                          forms=(CompressedForm(data.content, receipt),)))
    rng = random.Random(7)
    tokens = default_tokenizer()
    samples: list[float] = []
    pieces: list[int] = []
    for _ in range(runs):
        rng.shuffle(candidates)  # a different ranking each run
        started = time.perf_counter()
        context = assemble(candidates, purpose="summary", budget=budget, tokens=tokens)
        samples.append((time.perf_counter() - started) * 1000)
        pieces.append(len(context.pieces))
        assert context.used_tokens <= budget  # a bench guard, not a test: stop on a broken run
    samples.sort()
    print(f"assembly (pure) over {memories} ranked memories, budget {budget}: "
          f"p50 {samples[len(samples) // 2]:.1f} ms, p95 {samples[int(len(samples) * 0.95)]:.1f} "
          f"ms, {statistics.median(pieces):.0f} pieces per context ({runs} runs)")


def main(argv: Sequence[str] | None = None) -> None:
    """Print one table row per engine and one for the whole offline contest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    parser.add_argument("--similarity", action="store_true",
                        help="also measure MiniLM embedding similarity (slow)")
    args = parser.parse_args(argv)
    texts = load_texts()
    compressor = Compressor()
    tokens = compressor.tokens
    embed = MiniLMOnnxEmbedder(workers=1).embed if args.similarity else None

    spans_cpu, _ = timed(lambda: [find_spans(t) for t in texts], args.repeat)
    requests = [compressor.request(t) for t in texts]
    print(f"corpus: {len(texts)} texts, median {statistics.median(map(len, texts)):.0f} chars, "
          f"{statistics.median(r.input_tokens for r in requests):.0f} tokens "
          f"({tokens.name}); protected spans: {sum(len(r.spans) for r in requests)}, found at "
          f"{len(texts) / spans_cpu:.0f} texts/s (CPU)")
    print(f"{'engine':<16} {'/s cpu':>8} {'/s wall':>8} {'offered':>9} {'ratio':>6} "
          f"{'recall':>6} {'r=1':>6} {'gate':>4}  {'score':>6}  medians of components")
    engines: list[tuple[str, Callable[[CompressionRequest], Candidate]]] = [
        ("extractive", lambda r: ExtractiveEngine().compress(r, tokens)),
        ("facts", lambda r: FactsEngine().compress(r, tokens)),
    ]
    for name, compress in engines:
        candidates = run_engine(compress, requests)

        def work(compress: Callable[[CompressionRequest], Candidate] = compress) -> object:
            return run_engine(compress, requests)

        cpu, wall = timed(work, args.repeat)
        report_engine(name, requests, candidates, cpu, wall, embed)

    subject = Subject(memory_id="0190a0d2-7c4e-7b2a-9f3e-00000000bench", version_id="0" * 32)
    contest = [compressor.offline(subject, t) for t in texts]
    cpu, wall = timed(lambda: [compressor.offline(subject, t) for t in texts], args.repeat)
    winners = [c.result.winner.candidate if c.result.winner else None for c in contest]
    report_engine("offline contest", requests, winners, cpu, wall, embed)
    engines_won: dict[str, int] = {}
    for c in contest:
        if c.data is not None:
            engines_won[c.data.receipt.engine] = engines_won.get(c.data.receipt.engine, 0) + 1
    print(f"contest winners: {engines_won}")
    bench_assembly(list(zip(texts, contest, strict=True)), 10_000, 2_000, 40)
    if embed is not None:
        with_similarity = Compressor(embed=embed, embed_name="minilm")
        cpu, wall = timed(lambda: [with_similarity.offline(subject, t) for t in texts], 1)
        print(f"offline contest measuring similarity too: {len(texts) / wall:.0f}/s wall, "
              f"{len(texts) / cpu:.0f}/s CPU (one MiniLM run per candidate, 1 worker)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
