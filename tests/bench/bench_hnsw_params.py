"""HNSW graph parameters (m / ef_construction) compared on two corpora of MiniLM embeddings.

Run: ``python -m tests.bench.bench_hnsw_params [--size 100000] [--configs 16/64,8/64,8/96]``.
It is the evidence behind migration 0005 and ``MNEMOS_HNSW_EF_SEARCH``.

Corpora:

* ``synthetic``: the spine benchmark's template memories (``tests.bench.corpus``), queried by
  paraphrases of 200 of them. Its sentences crowd together, so it is the hard case for recall.
* ``docstrings``: real English sentences, the first paragraph of every docstring in the running
  Python's standard library and installed packages (about 45k here), queried by 200 held-out
  sentences.

For each corpus, the vectors are copied into a fresh table of a fresh embedded Postgres; for each
configuration the index is bulk-built, recall@10 against exact search (numpy) and latency of the
bare nearest-neighbour statement are measured at several ef_search values, and then the Postgres
CPU time of 1,000 single-row inserts into the indexed table (what the projector pays per memory)
is read from ``/proc`` for the backend. Embeddings are cached in ``--cache`` (a few minutes each).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import random
import re
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector

from libs.embeddings import MiniLMOnnxEmbedder
from libs.runtime.postgres_server import PostgresServer
from tests.bench.corpus import memory_texts, query_for
from tests.bench.harness import percentile, progress, report_line

K: Final = 10
QUERIES: Final = 200
INSERTS: Final = 1_000
PAD: Final = "x" * 300
"""Stands in for a memory row's other columns, so heap pages hold about as many rows."""
_SENTENCE_BREAK: Final = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")

Vectors = npt.NDArray[np.float32]


def docstring_sentences() -> list[str]:
    """Distinct sentences (40-300 characters) of the first paragraph of every docstring."""
    roots = {Path(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib", "platlib")}
    progress(f"collecting docstring sentences under {', '.join(map(str, sorted(roots)))}")
    seen: set[str] = set()
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            for sentence in _sentences(path):
                seen.add(sentence)
    ordered = sorted(seen)
    random.Random(1).shuffle(ordered)
    return ordered


def _sentences(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(errors="ignore"))
    except (SyntaxError, ValueError, RecursionError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        for sentence in _SENTENCE_BREAK.split(" ".join(doc.split("\n\n")[0].split())):
            if 40 <= len(sentence) <= 300 and sentence[0].isupper() and sentence.endswith(".") \
                    and ">>>" not in sentence:
                yield sentence


def corpus(name: str, size: int) -> tuple[list[str], list[str]]:
    """(documents, queries) of corpus ``name``."""
    if name == "synthetic":
        texts = memory_texts(size, seed=size)
        rng = random.Random(size)
        return texts, [query_for(text, rng) for text in rng.sample(texts, QUERIES)]
    sentences = docstring_sentences()
    return sentences[QUERIES:QUERIES + size], sentences[:QUERIES]


def embed(texts: list[str], cache: Path, label: str) -> Vectors:
    """MiniLM vectors of ``texts``, from ``cache`` when this exact list was embedded before."""
    embedder = MiniLMOnnxEmbedder.shared()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    key = f"{label}-{len(texts)}-{digest}-{embedder.model_id}"
    path = cache / (re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".npy")
    if path.exists():
        return np.load(path)  # type: ignore[no-any-return]
    parts = []
    for start in range(0, len(texts), 2_000):
        parts.append(embedder.embed(texts[start:start + 2_000]))
        progress(f"embedded {label} {min(start + 2_000, len(texts))}/{len(texts)}")
    vectors = np.concatenate(parts)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _backend_cpu_s(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    fields = Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(conn: psycopg.Connection[tuple[object, ...]], label: str, docs: Vectors,
            extra: Vectors, queries: Vectors, configs: list[tuple[int, int]],
            ef_values: list[int]) -> None:
    """Build each index configuration over ``docs`` and print recall, latency, insert cost."""
    exact = np.argsort(-(queries @ docs.T), axis=1)[:, :K]
    conn.execute("DROP TABLE IF EXISTS vectors")
    conn.execute("CREATE TABLE vectors (id int PRIMARY KEY, pad text, embedding vector(384))")
    with conn.cursor().copy("COPY vectors FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "text", "vector"])
        for i, vector in enumerate(docs):
            copy.write_row((i, PAD, vector))
    conn.execute("VACUUM ANALYZE vectors")
    for m, ef_construction in configs:
        name = f"{label} {len(docs) // 1000}k m={m} ef_construction={ef_construction}"
        conn.execute("DROP INDEX IF EXISTS vectors_hnsw")
        conn.execute("DELETE FROM vectors WHERE id >= %s", (len(docs),))
        progress(f"building {name}")
        began = time.perf_counter()
        conn.execute("CREATE INDEX vectors_hnsw ON vectors USING hnsw (embedding vector_cosine_ops)"
                     f" WITH (m = {m}, ef_construction = {ef_construction})")
        report_line(f"{name}: build", f"{time.perf_counter() - began:.0f} s")
        for ef in ef_values:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            runs, recalls = [], []
            for vector, truth in zip(queries, exact, strict=True):
                began = time.perf_counter()
                found = conn.execute("SELECT id FROM vectors ORDER BY embedding <=> %s LIMIT %s",
                                     (vector, K), prepare=False).fetchall()
                runs.append(time.perf_counter() - began)
                recalls.append(len({r[0] for r in found} & set(truth.tolist())) / K)
            report_line(f"{name}: ef_search {ef}",
                        f"recall@{K} {float(np.mean(recalls)):.3f}"
                        f"  p50 {percentile(runs, 50) * 1000:.1f} ms"
                        f"  p95 {percentile(runs, 95) * 1000:.1f} ms")
        before = _backend_cpu_s(conn)
        for i, vector in enumerate(extra[:INSERTS]):
            conn.execute("INSERT INTO vectors VALUES (%s, %s, %s)", (len(docs) + i, PAD, vector))
        spent = _backend_cpu_s(conn) - before
        report_line(f"{name}: insert", f"{spent / INSERTS * 1000:.2f} ms Postgres CPU per row")


def main() -> None:
    """Run the comparison and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=100_000,
                        help="documents per corpus (docstrings: at most what is installed)")
    parser.add_argument("--corpora", default="synthetic,docstrings")
    parser.add_argument("--configs", default="16/64,8/64,8/96", help="m/ef_construction,...")
    parser.add_argument("--ef-search", default="40,100,200,400")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                        / "mnemos-bench")
    args = parser.parse_args()
    configs = [(int(m), int(efc)) for m, efc in
               (item.split("/") for item in args.configs.split(","))]
    ef_values = [int(ef) for ef in args.ef_search.split(",")]
    with tempfile.TemporaryDirectory(prefix="mnemos-hnsw-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg")
        postgres.start()
        try:
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                register_vector(conn)
                conn.execute("SET maintenance_work_mem = '1GB'")
                conn.execute("SET hnsw.iterative_scan = relaxed_order")
                conn.execute("SET enable_sort = off")  # as the gateway's dense statement
                for label in args.corpora.split(","):
                    docs, questions = corpus(label, args.size + INSERTS)
                    vectors = embed(docs, args.cache, label)
                    query_vectors = embed(questions, args.cache, f"{label}-queries")
                    cut = len(vectors) - INSERTS
                    measure(conn, label, vectors[:cut], vectors[cut:], query_vectors, configs,
                            ef_values)
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
