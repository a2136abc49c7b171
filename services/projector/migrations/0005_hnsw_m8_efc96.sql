-- The HNSW graph of memory embeddings is rebuilt with m = 8 neighbours per node (was pgvector's
-- default 16) and ef_construction = 96 (was 64). Measured on the 2-core reference machine with
-- all-MiniLM-L6-v2 vectors of two corpora (bulk-built index, 200 queries, recall@10 against
-- exact search, Postgres CPU per incremental insert; tests/bench/bench_hnsw_params.py):
--   44k real sentences (docstrings)  m16/64: ef_search 100 -> 0.993 at p95 5.0 ms, insert 4.5 ms
--                                    m8/96:  ef_search 100 -> 0.988 at p95 2.9 ms, insert 3.1 ms
--   98k synthetic agent memories     m16/64: ef_search 400 -> 0.956 at p95 12.2 ms, insert 3.1 ms
--                                    m8/96:  ef_search 400 -> 0.963 at p95  9.2 ms, insert 2.7 ms
-- The smaller graph reaches the same recall at lower latency on both and costs a third less to
-- maintain on every projected memory, the projector's largest Postgres cost.
-- Rebuilding takes about 30 s per 100k memories with 512 MB of maintenance_work_mem (the
-- embedded default); the table is locked meanwhile, so queries of memories wait for it.
DROP INDEX memories_embedding;
CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 8, ef_construction = 96);
