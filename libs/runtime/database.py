"""Postgres connections scoped to the read-model schema, with pgvector types registered."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from psycopg.rows import DictRow, dict_row

__all__ = ["connect_async", "connect_sync", "search_path_options"]


def search_path_options(schema: str) -> str:
    """libpq ``options`` putting ``schema`` first on the search path (pgvector lives in public)."""
    return f"-c search_path={schema},public"


async def connect_async(
    url: str, schema: str, autocommit: bool = False
) -> psycopg.AsyncConnection[DictRow]:
    """An async connection with dict rows whose unqualified names resolve in ``schema``."""
    conn = await psycopg.AsyncConnection.connect(
        url, options=search_path_options(schema), autocommit=autocommit, row_factory=dict_row
    )
    await register_vector_async(conn)
    return conn


def connect_sync(
    url: str, schema: str, autocommit: bool = False
) -> psycopg.Connection[DictRow]:
    """A blocking connection, for migrations, CLI tools and tests."""
    conn = psycopg.connect(
        url, options=search_path_options(schema), autocommit=autocommit, row_factory=dict_row
    )
    register_vector(conn)
    return conn
