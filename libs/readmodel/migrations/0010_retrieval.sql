-- Retrieval (issue 12): the two clocks, threads, and a text search configuration for questions.

-- When what a memory says happened (events before MemoryCreated schema 3 say: when it was
-- recorded), and the thread it is a turn of with its position there (the writer's position,
-- else the creating event's stream sequence: the order the turns were written in).
ALTER TABLE memories ADD COLUMN occurred_at timestamptz;
UPDATE memories SET occurred_at = created_at;
ALTER TABLE memories ALTER COLUMN occurred_at SET NOT NULL;
ALTER TABLE memories ADD COLUMN thread_id text;
ALTER TABLE memories ADD COLUMN thread_position bigint;
CREATE INDEX memories_ns_occurred ON memories (ns, occurred_at);
CREATE INDEX memories_ns_thread ON memories (ns, thread_id, thread_position)
    WHERE thread_id IS NOT NULL;

-- `mnemos_english`: the english Snowball stemmer without its stopword file. The stopwords
-- dropped are a shorter list (mnemos_stopwords): words that carry meaning in a question - after,
-- before, while, during, both, when, where, who, not, no, only, again, more, most ... - are kept,
-- since "what did she do after the race" is about "after". Text search dictionaries read
-- stopwords only from files in the server's share directory; deleting stemmed stopwords from
-- the tsvector (ts_delete) needs no file, so the same migration works on any server.
CREATE TEXT SEARCH DICTIONARY mnemos_english_stem (TEMPLATE = snowball, Language = english);
CREATE TEXT SEARCH CONFIGURATION mnemos_english (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION mnemos_english
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH mnemos_english_stem;

DO $do$
DECLARE
    stems text[];
BEGIN
    SELECT array_agg(DISTINCT l ORDER BY l) INTO stems
    FROM unnest(ARRAY[
        'i', 'me', 'my', 'myself', 'we', 'our', 'ours', 'ourselves', 'you', 'your', 'yours',
        'yourself', 'yourselves', 'he', 'him', 'his', 'himself', 'she', 'her', 'hers',
        'herself', 'it', 'its', 'itself', 'they', 'them', 'their', 'theirs', 'themselves',
        'what', 'which', 'whom', 'this', 'that', 'these', 'those', 'am', 'is', 'are', 'was',
        'were', 'be', 'been', 'being', 'have', 'has', 'had', 'having', 'do', 'does', 'did',
        'doing', 'a', 'an', 'the', 'and', 'but', 'if', 'or', 'because', 'as', 'of', 'at', 'by',
        'for', 'with', 'about', 'into', 'through', 'to', 'from', 'in', 'on', 'then', 'here',
        'there', 'how', 'all', 'any', 'each', 'other', 'some', 'such', 'so', 'than', 'too',
        'very', 's', 't', 'can', 'will', 'just', 'don', 'should', 'now', 'd', 'll', 'm', 'o',
        're', 've', 'y'
    ]) AS w, unnest(ts_lexize('mnemos_english_stem', w)) AS l;
    EXECUTE format(
        'CREATE FUNCTION mnemos_stopwords() RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE'
        ' AS $body$ SELECT %L::text[] $body$', stems);
END
$do$;

-- Hyphenated compounds also as one word (de-stress -> destress), so either spelling finds the
-- other (the parser already indexes the parts: de, stress).
CREATE FUNCTION mnemos_compounds(doc text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(replace(m[1], '-', ''), ' '), '')
    FROM regexp_matches(doc, '([[:alnum:]]+(?:-[[:alnum:]]+)+)', 'g') AS m
$$;

-- The lexemes of a memory's content, and of a query's text: one function for both sides.
CREATE FUNCTION mnemos_tsvector(doc text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ts_delete(to_tsvector('mnemos_english', doc)
                     || to_tsvector('mnemos_english', mnemos_compounds(doc)),
                     mnemos_stopwords())
$$;

-- Regenerate every tsvector with it; the statistics trigger does not fire on a column rewrite,
-- so the lexical statistics are recounted from scratch (as 0002 first counted them).
ALTER TABLE memories DROP COLUMN tsv;
ALTER TABLE memories ADD COLUMN tsv tsvector GENERATED ALWAYS AS (mnemos_tsvector(content)) STORED;
TRUNCATE lexical_docs, lexical_ns_stats, lexical_df;
INSERT INTO lexical_docs (ns, memory_id, doc_len, tsv)
SELECT ns, memory_id, length(tsv), tsv FROM memories WHERE forgotten_at IS NULL;
INSERT INTO lexical_ns_stats (ns, doc_count, total_len)
SELECT ns, count(*), sum(doc_len) FROM lexical_docs GROUP BY ns;
INSERT INTO lexical_df (ns, lexeme, df)
SELECT m.ns, l.lexeme, count(*)
FROM memories m CROSS JOIN LATERAL unnest(tsvector_to_array(m.tsv)) AS l(lexeme)
WHERE m.forgotten_at IS NULL GROUP BY m.ns, l.lexeme;

-- Prefix matching of a query's last word reads the lexemes starting with it.
CREATE INDEX lexical_df_prefix ON lexical_df (ns, lexeme text_pattern_ops);
