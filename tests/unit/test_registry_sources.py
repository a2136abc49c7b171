"""Price table, leaderboard (files, paged HTTP, parquet), name matching and routing weights."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from libs.events.errors import InvalidInput, Unavailable
from libs.llm.types import ListedModel
from services.registry_sync.leaderboard import BoardRow, load_board, select
from services.registry_sync.prices import load_price_table, parse_price_table
from services.registry_sync.ranking import normalise_name, publish_ranking, routing_weights
from services.registry_sync.records import build_records
from tests.support_http import Recorded, ReplayServer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "providers"
PRICES = FIXTURES / "litellm" / "model_prices_and_context_window.json"
BOARD_CSV = FIXTURES / "leaderboard" / "text_leaderboard.csv"
BOARD_JSON = FIXTURES / "leaderboard" / "text_leaderboard.json"


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


async def test_price_table_from_path_and_url(server: ReplayServer, client) -> None:
    table = await load_price_table(PRICES)
    assert "sample_spec" not in table.entries and table.malformed == 1  # broken-entry
    gpt = table.entries["gpt-4o"]
    assert (gpt.max_input_tokens, gpt.max_output_tokens) == (128000, 16384)
    assert gpt.input_cost_per_token == 2.5e-06 and gpt.output_cost_per_token == 1e-05
    assert gpt.capabilities == ("chat", "json", "prompt_caching", "tools", "vision")
    assert table.entries["gpt-3.5-turbo"].deprecation_date == "2025-09-13"
    assert table.lookup("gemini", "gemini-2.5-flash") is not None
    assert table.lookup(None, "gemini-2.5-flash") is None
    server.add("GET", "/prices.json", Recorded(body=PRICES.read_bytes()))
    assert (await load_price_table(server.url + "/prices.json", client)).entries == table.entries
    with pytest.raises(Unavailable):
        await load_price_table(server.url + "/missing.json", client)
    with pytest.raises(Unavailable):
        await load_price_table("/nonexistent/prices.json")


@pytest.mark.parametrize("body", [b"[]", b"not json", b"", b'"x"'])
def test_price_table_that_is_not_an_object_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_price_table(body)


def test_price_table_rejects_nonfinite_and_odd_values() -> None:
    table = parse_price_table(json.dumps({
        "a": {"input_cost_per_token": -1.0, "mode": "chat"},
        "b": {"input_cost_per_token": True}, "c": {"supports_vision": "yes"},
        "d\u0000": {"mode": "chat"}, "e": {"deprecation_date": "2025-13-45"},
    }).encode())
    assert set(table.entries) == {"a", "e"} and table.malformed == 3
    assert table.entries["a"].input_cost_per_token is None
    assert table.entries["e"].deprecation_date is None


def test_records_join_provider_and_table_with_sources() -> None:
    table = parse_price_table(PRICES.read_bytes())
    listed = (ListedModel(provider="openai", model_id="gpt-4o", created_at="2024-05-10T00:00:00Z"),
              ListedModel(provider="groq", model_id="llama-3.3-70b-versatile",
                          context_window=131072, max_output_tokens=32768),
              ListedModel(provider="openai", model_id="text-embedding-3-small"),
              ListedModel(provider="local", model_id="my-finetune"))
    built = build_records(listed[::2] + listed[3:], table, None, {"my-*": "house"})
    assert [r.key for r in built] == sorted(r.key for r in built)
    gpt, emb, mine = (next(r for r in built if r.model_id == i)
                      for i in ("gpt-4o", "text-embedding-3-small", "my-finetune"))
    (llama,) = build_records(listed[1:2], table, "groq", {})
    assert gpt.context_window == 128000 and gpt.sources["context_window"] == "price_table"
    assert gpt.input_modalities == ("image", "text") and gpt.family == "gpt"
    assert gpt.sources["created_at"] == "provider"
    assert llama.context_window == 131072 and llama.sources["context_window"] == "provider"
    assert llama.input_cost_per_token == 5.9e-07
    assert llama.sources["input_cost_per_token"] == "price_table"
    assert emb.capabilities == ("embeddings",)
    assert mine.family == "house" and mine.sources["family"] == "alias"
    assert mine.capabilities == ("chat",) and mine.sources["capabilities"] == "default"
    assert mine.input_cost_per_token is None and mine.sources["input_cost_per_token"] == "default"


@pytest.mark.parametrize("path", [BOARD_CSV, BOARD_JSON])
async def test_board_files_select_category_and_latest_date(path: Path) -> None:
    board = await load_board(path)
    assert board.malformed == 2  # a row without a name, a row whose CI excludes its rating
    rows = select(board.rows, "overall")
    names = [r.name for r in rows]
    assert names.count("gemini-2.5-pro") == 1
    assert rows[0].rating == 1460.2 and rows[0].publish_date == "2025-06-10"
    assert rows[0].ci_lower == 1454.1 and rows[0].votes == 12914 and rows[0].rank == 1
    assert select(board.rows, "coding")[0].rating == 1470.0


async def test_parquet_board_over_http(server: ReplayServer, client) -> None:
    rows = json.loads(BOARD_JSON.read_text())
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    server.add("GET", "/lb/text.parquet", Recorded(body=sink.getvalue(), headers=(
        ("content-type", "application/octet-stream"),)))
    board = await load_board(server.url + "/lb/text.parquet", client)
    assert len(board.rows) == 9 and board.malformed == 2


async def test_paged_rows_api_fetches_every_page(server: ReplayServer, client) -> None:
    rows = [{"model_name": f"m-{i}", "rating": 1000 + i, "rating_lower": 995 + i,
             "rating_upper": 1005 + i, "vote_count": 100 * i, "rank": 1000 - i,
             "category": "overall", "leaderboard_publish_date": "2025-06-10"}
            for i in range(1000)]
    for offset in range(0, 1000, 100):
        page = {"features": [], "rows": [{"row_idx": offset + j, "row": rows[offset + j],
                                          "truncated_cells": []} for j in range(100)],
                "num_rows_total": 1000, "num_rows_per_page": 100, "partial": False}
        server.add("GET", "/rows", Recorded.json(page), query={"offset": str(offset)})
    board = await load_board(server.url + "/rows", client, rows_api_params={
        "dataset": "lmarena-ai/leaderboard-dataset", "config": "text", "split": "latest"})
    assert len(board.rows) == 1000 and board.pages == 10
    assert {r.query["offset"] for r in server.requests} == {str(o) for o in range(0, 1000, 100)}
    assert all(r.query["dataset"] == "lmarena-ai/leaderboard-dataset" for r in server.requests)


async def test_a_malformed_page_fails_the_fetch(server: ReplayServer, client) -> None:
    server.add("GET", "/rows", Recorded.json({"rows": [{"row": {"model_name": "a",
                                                                "rating": 1}}],
                                              "num_rows_total": 2}), query={"offset": "0"})
    server.add("GET", "/rows", Recorded(body=b'{"rows": [tru'), query={"offset": "1"})
    with pytest.raises(InvalidInput):
        await load_board(server.url + "/rows", client, rows_api_params={})
    server.add("GET", "/rows", Recorded.json({"error": "gone"}, status=500),
               query={"offset": "1"})
    with pytest.raises(Unavailable):
        await load_board(server.url + "/rows", client, rows_api_params={})


def record(provider: str, model_id: str, display: str | None = None):
    (made,) = build_records((ListedModel(provider=provider, model_id=model_id,
                                         display_name=display),), None, None, {})
    return made


def test_matching_is_alias_or_exact_normalised_never_guessed() -> None:
    records = {r.key: r for r in [
        record("gemini", "gemini-2.5-pro"), record("anthropic", "claude-opus-4-1-20250805"),
        record("openai", "gpt-4o"), record("groq", "llama-3.3-70b-versatile"),
        record("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        record("openrouter", "x/yi", display="Yi Lightning")]}
    rows = (BoardRow(name="Gemini-2.5-Pro", rating=1460, votes=12914),
            BoardRow(name="claude-opus-4-1-20250805", rating=1447, votes=5000),
            BoardRow(name="gpt-4o-2024-05-13", rating=1345, votes=117310),
            BoardRow(name="llama-3.3-70b-instruct", rating=1319, votes=28110),
            BoardRow(name="yi_lightning", rating=1353, votes=28000),
            BoardRow(name="mystery-model", rating=1200, votes=10))
    aliases = {"llama-3.3-70b-instruct": ("llama-3.3-70b-versatile",
                                          "together/meta-llama/Llama-3.3-70B-Instruct-Turbo")}
    ranking = publish_ranking(records, rows, source="arena", category="overall",
                              aliases=aliases)
    matched = {e.key: e for e in ranking.entries}
    assert matched["gemini/gemini-2.5-pro"].matched_by == "exact"
    assert matched["groq/llama-3.3-70b-versatile"].matched_by == "alias"
    assert "together/meta-llama/Llama-3.3-70B-Instruct-Turbo" in matched
    assert matched["openrouter/x/yi"].leaderboard_name == "yi_lightning"  # display name
    assert "openai/gpt-4o" not in matched  # "gpt-4o-2024-05-13" is not "gpt-4o": no guessing
    assert ranking.unmatched == 2
    assert ranking.unmatched_names == ("gpt-4o-2024-05-13", "mystery-model")


def test_normalisation() -> None:
    assert normalise_name("  GPT 4o_mini ") == normalise_name("gpt-4o-mini") == "gpt-4o-mini"
    assert normalise_name("\uff47\uff50\uff54") == "gpt"  # NFKC folds full-width letters
    assert normalise_name("Straße") == "strasse"


def test_routing_weight_formula() -> None:
    rows = [BoardRow(name="sure", rating=1400, ci_lower=1395, ci_upper=1405, votes=50_000),
            BoardRow(name="lucky", rating=1410, ci_lower=1300, ci_upper=1500, votes=300),
            BoardRow(name="bottom", rating=1200, ci_lower=1190, ci_upper=1210, votes=50_000),
            BoardRow(name="unvoted", rating=1450)]
    weights = routing_weights(rows)
    assert weights["sure"] > weights["lucky"]  # a tight CI beats a higher, uncertain estimate
    assert weights["unvoted"] == 0.5  # no votes: the neutral prior
    assert weights["bottom"] < 0.1
    assert all(0 <= w <= 1 for w in weights.values())
    assert routing_weights(rows) == weights and routing_weights([]) == {}
    assert routing_weights([BoardRow(name="x", rating=1e308, votes=2**62)])["x"] <= 1
