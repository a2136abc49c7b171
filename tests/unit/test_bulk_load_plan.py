"""How the finish of a bulk load is shared out over connections (libs.readmodel.bulk_load)."""

from __future__ import annotations

from libs.readmodel.bulk_load import DeferredStructures, finish_tasks

_INDEXES = (
    ("lexical_df_prefix", 'CREATE INDEX lexical_df_prefix ON "s x".lexical_df USING btree '
                          "(ns, lexeme text_pattern_ops)"),
    ("memories_embedding", "CREATE INDEX memories_embedding ON s.memories USING hnsw "
                           "(embedding vector_cosine_ops) WITH (m='8')"),
    ("memories_tags", "CREATE INDEX memories_tags ON s.memories USING gin (tags)"),
    ("lexical_docs_tsv", "CREATE INDEX lexical_docs_tsv ON s.lexical_docs USING gin (tsv)"),
)


def test_the_graph_goes_first_and_lexical_indexes_follow_their_recount() -> None:
    tasks = finish_tasks(DeferredStructures("s", _INDEXES))
    assert [name for name, _ in tasks[0]] == ["memories_embedding"]
    assert [name for name, _ in tasks[1]] == ["lexical statistics", "lexical_df_prefix",
                                              "lexical_docs_tsv"]
    assert tasks[1][0][1] == ""  # the recount, not an index
    assert tasks[2:] == [[_INDEXES[2]]]
    built = [name for task in tasks for name, definition in task if definition]
    assert sorted(built) == sorted(name for name, _ in _INDEXES)


def test_no_deferred_index_still_recounts() -> None:
    assert finish_tasks(DeferredStructures("s", ())) == [[("lexical statistics", "")]]
