"""An Arena-style leaderboard: rows from CSV, JSON or parquet, paged over HTTP, one category.

Columns (the lmarena leaderboard export's names, with accepted variants): ``model_name``,
``rating``, ``rating_lower``/``rating_upper`` (the 95% CI bounds), ``vote_count``, ``rank``,
``category``, ``leaderboard_publish_date``. A row without a name or a finite rating, or whose
CI does not contain its rating, is counted as malformed, never guessed. Of a multi-category,
multi-date export, :func:`select` keeps one category at its latest publish date.

Over HTTP the source is either one file (by extension or content type) or a paged rows API in
the shape of the Hugging Face dataset viewer (``/rows?offset=&length=`` answering ``{rows:
[{row_idx, row}], num_rows_total}``); every page is fetched.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from libs.events.errors import InvalidInput, Unavailable

__all__ = [
    "COLUMNS",
    "Board",
    "BoardRow",
    "board_from_bytes",
    "fetch_rows_api",
    "load_board",
    "parse_rows",
    "select",
]

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "name": ("model_name", "model", "Model", "key", "name"),
    "rating": ("rating", "score", "Arena Score", "arena_score", "elo"),
    "lower": ("rating_lower", "lower", "ci_lower", "rating_q025"),
    "upper": ("rating_upper", "upper", "ci_upper", "rating_q975"),
    "votes": ("vote_count", "votes", "Votes", "num_battles"),
    "rank": ("rank", "Rank", "rank_ub", "Rank (UB)"),
    "category": ("category", "Category"),
    "date": ("leaderboard_publish_date", "publish_date", "date"),
}
"""Accepted header names per field; the first one present wins."""
PAGE_LENGTH: Final = 100
"""Rows asked per page of a rows API (the dataset viewer's maximum)."""
MAX_PAGES: Final = 10_000
"""Guard against a rows API whose total keeps growing."""


class BoardRow(msgspec.Struct, frozen=True, kw_only=True):
    """One leaderboard row, cleaned."""

    name: str
    rating: float
    ci_lower: float | None = None
    ci_upper: float | None = None
    votes: int | None = None
    rank: int | None = None
    category: str | None = None
    publish_date: str | None = None


class Board(msgspec.Struct, frozen=True, kw_only=True):
    """Rows of one fetch, how many pages it took and how many rows were malformed."""

    rows: tuple[BoardRow, ...]
    pages: int = 1
    malformed: int = 0


def _pick(raw: Mapping[str, Any], field: str) -> Any:
    for column in COLUMNS[field]:
        value = raw.get(column)
        if value is not None and value != "":
            return value
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _count(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number.is_integer() else None


def _row(raw: Mapping[str, Any]) -> BoardRow | None:
    name, rating = _pick(raw, "name"), _number(_pick(raw, "rating"))
    if not isinstance(name, str) or not name.strip() or "\x00" in name or rating is None:
        return None
    lower, upper = _number(_pick(raw, "lower")), _number(_pick(raw, "upper"))
    if (lower is not None and lower > rating) or (upper is not None and upper < rating):
        return None
    category, when = _pick(raw, "category"), _pick(raw, "date")
    return BoardRow(name=name.strip(), rating=rating, ci_lower=lower, ci_upper=upper,
                    votes=_count(_pick(raw, "votes")), rank=_count(_pick(raw, "rank")),
                    category=str(category) if category is not None else None,
                    publish_date=str(when)[:10] if when is not None else None)


def parse_rows(raws: Iterable[object]) -> tuple[list[BoardRow], int]:
    """Clean rows; returns the good ones and the count of malformed ones."""
    rows: list[BoardRow] = []
    malformed = 0
    for raw in raws:
        row = _row(raw) if isinstance(raw, Mapping) else None
        if row is None:
            malformed += 1
        else:
            rows.append(row)
    return rows, malformed


def _decode(body: bytes, fmt: str) -> list[object]:
    try:
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
        if fmt == "parquet":
            import pyarrow.parquet as pq

            rows: list[object] = pq.read_table(io.BytesIO(body)).to_pylist()
            return rows
        if fmt == "jsonl":
            return [msgspec.json.decode(line) for line in body.splitlines() if line.strip()]
        decoded = msgspec.json.decode(body)
    except Exception as exc:  # each format has its own error types; all mean "not this format"
        raise InvalidInput(f"leaderboard is not valid {fmt}: {type(exc).__name__}") from None
    if isinstance(decoded, dict) and isinstance(decoded.get("rows"), list):
        decoded = [r.get("row", r) if isinstance(r, dict) else r for r in decoded["rows"]]
    if not isinstance(decoded, list):
        raise InvalidInput("leaderboard JSON must be a list of rows or {rows: [...]}")
    return decoded


def _format_of(name: str, content_type: str = "") -> str:
    lowered = name.lower().split("?")[0]
    for ext in ("csv", "parquet", "jsonl", "json"):
        if lowered.endswith("." + ext):
            return ext
    if "csv" in content_type:
        return "csv"
    if "parquet" in content_type or "octet-stream" in content_type:
        return "parquet"
    return "json"


def board_from_bytes(body: bytes, fmt: str) -> Board:
    """A board from one file's bytes in ``fmt`` (csv, json, jsonl, parquet)."""
    rows, malformed = parse_rows(_decode(body, fmt))
    return Board(rows=tuple(rows), malformed=malformed)


class _RowsPage(msgspec.Struct):
    rows: list[dict[str, Any]]
    num_rows_total: int


async def _get(client: httpx.AsyncClient, url: str, params: Mapping[str, str] | None,
               timeout_s: float) -> httpx.Response:
    try:
        response = await client.get(url, params=params, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"leaderboard at {url} failed: {type(exc).__name__}") from None
    return response


async def fetch_rows_api(client: httpx.AsyncClient, url: str, params: Mapping[str, str],
                         timeout_s: float = 30.0, page_length: int = PAGE_LENGTH) -> Board:
    """Every page of a dataset-viewer style rows API (``offset``/``length``)."""
    raws: list[object] = []
    offset, pages = 0, 0
    while pages < MAX_PAGES:
        query = dict(params) | {"offset": str(offset), "length": str(page_length)}
        response = await _get(client, url, query, timeout_s)
        try:
            page = msgspec.json.decode(response.content, type=_RowsPage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidInput(f"leaderboard page at offset {offset} is malformed: {exc}",
                               offset=offset) from None
        pages += 1
        raws.extend(r.get("row", r) for r in page.rows)
        offset += len(page.rows)
        if offset >= page.num_rows_total or not page.rows:
            break
    rows, malformed = parse_rows(raws)
    return Board(rows=tuple(rows), pages=pages, malformed=malformed)


async def load_board(source: str | Path, client: httpx.AsyncClient | None = None, *,
                     rows_api_params: Mapping[str, str] | None = None,
                     timeout_s: float = 30.0) -> Board:
    """Load a board from a path, a file URL, or (with ``rows_api_params``) a paged rows API."""
    text = str(source)
    if not text.startswith(("http://", "https://")):
        try:
            body = await asyncio.to_thread(Path(text).read_bytes)
            return board_from_bytes(body, _format_of(text))
        except OSError as exc:
            raise Unavailable(f"leaderboard {text} unreadable: {exc.strerror}") from None
    http = client or httpx.AsyncClient()
    try:
        if rows_api_params is not None:
            return await fetch_rows_api(http, text, rows_api_params, timeout_s)
        response = await _get(http, text, None, timeout_s)
        return board_from_bytes(response.content,
                                _format_of(text, response.headers.get("content-type", "")))
    finally:
        if client is None:
            await http.aclose()


def select(rows: Sequence[BoardRow], category: str) -> tuple[BoardRow, ...]:
    """Rows of ``category`` (rows without one count as it) at its latest publish date.

    A name that appears twice in the selection keeps its first row.
    """
    chosen = [r for r in rows if r.category in (None, category)]
    dates = [r.publish_date for r in chosen if r.publish_date]
    latest = max(dates) if dates else None
    seen: set[str] = set()
    out: list[BoardRow] = []
    for row in chosen:
        if latest is not None and row.publish_date not in (None, latest):
            continue
        if row.name not in seen:
            seen.add(row.name)
            out.append(row)
    return tuple(out)
