-- The HNSW graph of memory embeddings is rebuilt with m = 8 neighbours per node (was pgvector's
-- default 16) and ef_construction = 96 (was 64). Measured on the 2-core reference machine with
-- all-MiniLM-L6-v2 vectors of two corpora (python -m tests.bench.bench_hnsw_params: bulk-built
-- index, 200 queries, recall@10 against exact search, Postgres CPU per single-row insert):
--   100k synthetic agent memories   m16/64: ef_search 400 -> 0.955 at p95 13.3 ms, insert 3.5 ms
--                                   m8/96:  ef_search 400 -> 0.969 at p95  9.6 ms, insert 2.7 ms
--   43k real sentences (docstrings) m16/64: ef_search 100 -> 0.994 at p95  6.6 ms, insert 5.6 ms
--                                   m8/96:  ef_search 100 -> 0.987 at p95  4.3 ms, insert 3.7 ms
-- The smaller graph is faster at equal recall on the hard corpus and about as good per
-- millisecond on real text, and costs a quarter to a third less on every projected memory (the
-- index insert is the projector's largest Postgres cost).
-- Rebuilding takes about 30 s per 100k memories with 512 MB of maintenance_work_mem (the
-- embedded default); the table is locked meanwhile, so queries of memories wait for it.
DROP INDEX memories_embedding;
CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 8, ef_construction = 96);
