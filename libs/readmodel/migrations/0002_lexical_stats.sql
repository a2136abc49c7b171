-- Corpus statistics for BM25, maintained with every change of a memory's content or liveness so
-- a search reads N, avgdl and each query term's document frequency instead of counting them,
-- and a narrow copy of each live memory's tsvector to read candidates from (the `memories` heap
-- carries the embedding inline, ~1.6 kB a row, so fetching a few hundred candidates from it
-- costs a page each, mostly outside shared buffers).
-- Like every read model they are a function of the projected events: a trigger on `memories`
-- keeps them in the transaction of the projection (and of every future projection that touches
-- content or forgotten_at), and a replay rebuilds them row for row. Only live (not forgotten)
-- memories count; a row whose count reaches zero is deleted, so the tables always equal a
-- from-scratch recount over the live memories.

-- One row per live memory: its lexemes and its length as BM25 sees it (distinct lexemes).
CREATE TABLE lexical_docs (
    ns        text     NOT NULL,
    memory_id text     NOT NULL,
    doc_len   integer  NOT NULL,
    tsv       tsvector NOT NULL,
    PRIMARY KEY (ns, memory_id),
    FOREIGN KEY (ns, memory_id) REFERENCES memories (ns, memory_id) ON DELETE CASCADE
);
-- fastupdate off: with the default pending list, every search rescans up to 4 MB of unmerged
-- recent entries (measured at 100k memories right after ingest: lexical p50 3 ms -> 11 ms).
CREATE INDEX lexical_docs_tsv ON lexical_docs USING gin (tsv) WITH (fastupdate = off);

CREATE TABLE lexical_ns_stats (
    ns        text   PRIMARY KEY,
    doc_count bigint NOT NULL CHECK (doc_count > 0),  -- live memories
    total_len bigint NOT NULL CHECK (total_len >= 0)  -- sum of their doc_len
);

-- Document frequency of each lexeme among the namespace's live memories.
CREATE TABLE lexical_df (
    ns     text   NOT NULL,
    lexeme text   NOT NULL,
    df     bigint NOT NULL CHECK (df > 0),
    PRIMARY KEY (ns, lexeme)
);

-- Adds (sign = 1) or removes (sign = -1) documents to the statistics of one namespace.
-- `lexemes` may repeat across documents but not within one (tsvector lexemes are distinct).
-- Sorted upserts keep the lock order the same in every transaction. Tables are found through
-- the caller's search_path (the projector's schema), as everywhere else: a replay renames the
-- schema, so a name bound at creation would dangle.
CREATE FUNCTION lexical_stats_apply(p_ns text, p_docs bigint, p_len bigint, p_lexemes text[],
                                    p_sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Removals never go through INSERT: its CHECK would see the negative proposed row.
    IF p_docs > 0 THEN
        INSERT INTO lexical_ns_stats AS s (ns, doc_count, total_len)
        VALUES (p_ns, p_docs, p_len)
        ON CONFLICT (ns) DO UPDATE
            SET doc_count = s.doc_count + EXCLUDED.doc_count,
                total_len = s.total_len + EXCLUDED.total_len;
    ELSIF p_docs < 0 THEN
        DELETE FROM lexical_ns_stats WHERE ns = p_ns AND doc_count = -p_docs;
        UPDATE lexical_ns_stats SET doc_count = doc_count + p_docs, total_len = total_len + p_len
         WHERE ns = p_ns;
    END IF;
    IF p_sign > 0 THEN
        INSERT INTO lexical_df AS d (ns, lexeme, df)
        SELECT p_ns, l, 1 FROM unnest(p_lexemes) AS l ORDER BY l COLLATE "C"
        ON CONFLICT (ns, lexeme) DO UPDATE SET df = d.df + 1;
    ELSIF cardinality(p_lexemes) > 0 THEN
        -- A lexeme leaving its last live document disappears (df = 0 is never stored).
        DELETE FROM lexical_df WHERE ns = p_ns AND lexeme = ANY (p_lexemes) AND df = 1;
        UPDATE lexical_df SET df = df - 1 WHERE ns = p_ns AND lexeme = ANY (p_lexemes);
    END IF;
END;
$$;

-- Old document out, new document in, by difference: a revision that keeps most words touches
-- only the lexemes it adds or drops; tags, metadata, links and other columns touch nothing.
CREATE FUNCTION lexical_stats_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_live boolean := TG_OP <> 'INSERT' AND OLD.forgotten_at IS NULL;
    new_live boolean := TG_OP <> 'DELETE' AND NEW.forgotten_at IS NULL;
    old_lex  text[]  := '{}';
    new_lex  text[]  := '{}';
BEGIN
    IF old_live THEN old_lex := tsvector_to_array(OLD.tsv); END IF;
    IF new_live THEN new_lex := tsvector_to_array(NEW.tsv); END IF;
    IF old_live AND new_live AND OLD.ns = NEW.ns AND OLD.memory_id = NEW.memory_id THEN
        IF OLD.tsv = NEW.tsv THEN
            RETURN NULL;
        END IF;
        UPDATE lexical_docs SET tsv = NEW.tsv, doc_len = length(NEW.tsv)
         WHERE ns = NEW.ns AND memory_id = NEW.memory_id;
        PERFORM lexical_stats_apply(NEW.ns, 0, 0,
            ARRAY(SELECT unnest(new_lex) EXCEPT SELECT unnest(old_lex)), 1);
        PERFORM lexical_stats_apply(NEW.ns, 0, 0,
            ARRAY(SELECT unnest(old_lex) EXCEPT SELECT unnest(new_lex)), -1);
        IF length(NEW.tsv) <> length(OLD.tsv) THEN
            UPDATE lexical_ns_stats SET total_len = total_len + length(NEW.tsv) - length(OLD.tsv)
             WHERE ns = NEW.ns;
        END IF;
        RETURN NULL;
    END IF;
    IF old_live THEN
        -- On DELETE the row is already gone (ON DELETE CASCADE); on UPDATE it is removed here.
        DELETE FROM lexical_docs WHERE ns = OLD.ns AND memory_id = OLD.memory_id;
        PERFORM lexical_stats_apply(OLD.ns, -1, -length(OLD.tsv), old_lex, -1);
    END IF;
    IF new_live THEN
        INSERT INTO lexical_docs (ns, memory_id, doc_len, tsv)
        VALUES (NEW.ns, NEW.memory_id, length(NEW.tsv), NEW.tsv);
        PERFORM lexical_stats_apply(NEW.ns, 1, length(NEW.tsv), new_lex, 1);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER memories_lexical_stats
    AFTER INSERT OR DELETE OR UPDATE OF content, forgotten_at, ns, memory_id ON memories
    FOR EACH ROW EXECUTE FUNCTION lexical_stats_trigger();

-- Existing memories (a schema migrated in place rather than replayed).
INSERT INTO lexical_docs (ns, memory_id, doc_len, tsv)
SELECT ns, memory_id, length(tsv), tsv FROM memories WHERE forgotten_at IS NULL;
INSERT INTO lexical_ns_stats (ns, doc_count, total_len)
SELECT ns, count(*), sum(doc_len) FROM lexical_docs GROUP BY ns;
INSERT INTO lexical_df (ns, lexeme, df)
SELECT m.ns, l.lexeme, count(*)
FROM memories m CROSS JOIN LATERAL unnest(tsvector_to_array(m.tsv)) AS l(lexeme)
WHERE m.forgotten_at IS NULL GROUP BY m.ns, l.lexeme;
