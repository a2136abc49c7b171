-- The audit hash chain (DESIGN.md section 5), in its own schema <db_schema>_audit. Unlike the
-- read models, these rows are not a projection that can be re-derived silently: they are the
-- evidence that the stream has not changed since it was chained, so they are append-only,
-- guarded by triggers, and out of reach of `mnemos replay`'s schema swap.

-- One row per stream sequence; seq 0 is the genesis row written by the auditor at start.
CREATE TABLE audit_chain (
    seq        bigint PRIMARY KEY CHECK (seq >= 0),
    event_id   text,                      -- envelope id, NULL when the bytes are not an event
    event_hash bytea  NOT NULL CHECK (octet_length(event_hash) = 32),
    prev_link  bytea  NOT NULL CHECK (octet_length(prev_link) = 32),
    link       bytea  NOT NULL CHECK (octet_length(link) = 32)
);
CREATE INDEX audit_chain_event_id ON audit_chain (event_id);

-- A second writer cannot fork the chain: every inserted row must continue the stored row
-- before it (seq - 1, same link). Checked once per statement over the inserted set, so a
-- COPY of thousands of rows costs one join, not one trigger call per row.
CREATE FUNCTION audit_chain_check_continuity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad bigint;
BEGIN
    SELECT n.seq INTO bad
      FROM audit_chain_new n
      LEFT JOIN audit_chain p ON p.seq = n.seq - 1
     WHERE n.seq > 0 AND (p.seq IS NULL OR p.link <> n.prev_link)
     ORDER BY n.seq
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'audit chain fork refused at seq %: prev_link is not the stored link of seq %',
            bad, bad - 1 USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_chain_continuity
    AFTER INSERT ON audit_chain REFERENCING NEW TABLE AS audit_chain_new
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_check_continuity();

-- Append-only: ordinary sessions cannot rewrite or remove links. (A superuser can still
-- bypass triggers; that is what verification and signed checkpoints are for.)
CREATE FUNCTION audit_chain_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_chain_append_only
    BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_refuse_change();
CREATE TRIGGER audit_chain_no_truncate
    BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_refuse_change();

-- The head as last committed by the writer, in the same transaction as its rows. A head
-- beyond the last stored row is evidence that rows were removed.
CREATE TABLE audit_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint      NOT NULL,
    link       bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Signed checkpoints of the head. event_id/command_id are fixed when the checkpoint is made
-- so that re-publishing after a crash is deduplicated by JetStream.
CREATE TABLE audit_checkpoints (
    seq           bigint PRIMARY KEY,
    link          bytea       NOT NULL,
    at            text        NOT NULL, -- exactly the signed spelling
    public_key    text        NOT NULL,
    signature     text        NOT NULL,
    event_id      text        NOT NULL UNIQUE,
    command_id    text        NOT NULL,
    published_seq bigint,               -- stream seq of the AuditCheckpointSigned event
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Every verification run, and the point the next incremental run starts from.
CREATE TABLE audit_verifications (
    id          bigserial PRIMARY KEY,
    mode        text        NOT NULL CHECK (mode IN ('full', 'incremental')),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    from_seq    bigint      NOT NULL,
    to_seq      bigint      NOT NULL,
    to_link     bytea,
    ok          boolean     NOT NULL,
    report      jsonb       NOT NULL
);
CREATE INDEX audit_verifications_ok ON audit_verifications (to_seq) WHERE ok;

-- What the writer noticed on its own (rows missing at takeover, stream gaps).
CREATE TABLE audit_incidents (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    kind   text        NOT NULL,
    seq    bigint,
    detail text        NOT NULL
);
