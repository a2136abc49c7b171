-- Lexical search reads `lexical_docs` (0002) since its statistics landed; the GIN index on
-- `memories.tsv` served nothing but still cost every projected write. The generated column
-- stays: the lexical statistics trigger reads it.
DROP INDEX IF EXISTS memories_tsv;
