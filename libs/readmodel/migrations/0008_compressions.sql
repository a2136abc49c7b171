-- Compressions of memory versions (MemoryCompressed events, DESIGN.md section 4): the compressed
-- text and its receipt, one row per receipt id. The receipt id is content-addressed over
-- (version, input, engines, settings, trigger, tokenizer), so the same compression projected
-- twice (a re-run past the duplicate window) keeps the first row. The receipt is stored as `json`
-- (the exact text, like event payloads); the columns beside it are what context assembly and
-- the receipts query select on.
--
-- A compression belongs to its version: removing the version (only ever by dropping the memory,
-- which cascades to its versions) removes its compressions (CASCADE, tested).
CREATE TABLE memory_compressions (
    ns                text             NOT NULL,
    memory_id         text             NOT NULL,
    receipt_id        text             NOT NULL,
    version_id        text             NOT NULL,
    engine            text             NOT NULL,
    engine_version    text             NOT NULL,
    trigger           text             NOT NULL,
    tokenizer         text             NOT NULL,
    original_tokens   integer          NOT NULL,
    compressed_tokens integer          NOT NULL,
    ratio             double precision NOT NULL,
    quality_score     double precision NOT NULL,
    safe_for          text[]           NOT NULL,
    content           text             NOT NULL,
    receipt           json             NOT NULL,
    event_id          text             NOT NULL,
    seq               bigint           NOT NULL,
    created_at        timestamptz      NOT NULL,
    PRIMARY KEY (ns, memory_id, receipt_id),
    FOREIGN KEY (ns, memory_id, version_id)
        REFERENCES memory_versions (ns, memory_id, version_id) ON DELETE CASCADE
);
CREATE INDEX memory_compressions_version ON memory_compressions (ns, memory_id, version_id);
