-- Read models of the memory lifecycle. Every row here is a projection of events in
-- MNEMOS_EVENTS; the whole schema can be dropped and rebuilt by `mnemos replay`.

CREATE TABLE read_model_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO read_model_settings (key, value) VALUES ('embedding_dim', '{{embedding_dim}}');

-- Last stream sequence applied by each projection, committed with the change it describes.
CREATE TABLE projection_checkpoints (
    name       text PRIMARY KEY,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memories (
    ns                text        NOT NULL,
    memory_id         text        NOT NULL,
    kind              text        NOT NULL,
    content           text        NOT NULL,
    content_hash      text        NOT NULL,
    head_version_id   text        NOT NULL,
    version_count     integer     NOT NULL,
    tags              text[]      NOT NULL DEFAULT '{}',
    metadata          jsonb       NOT NULL DEFAULT '{}',
    source            text,
    agent_id          text,                 -- creating agent, for filters
    created_by        jsonb       NOT NULL, -- Actor of the creating event
    updated_by        jsonb       NOT NULL, -- Actor of the latest event
    created_command_id text       NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    revision          bigint      NOT NULL, -- stream seq of the latest event on this memory
    forgotten_at      timestamptz,
    forgotten_by      jsonb,
    forgotten_reason  text,
    embedding         vector({{embedding_dim}}),
    embedding_model   text,
    tsv               tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    PRIMARY KEY (ns, memory_id)
);
CREATE INDEX memories_ns_created ON memories (ns, created_at);
CREATE INDEX memories_ns_kind ON memories (ns, kind);
CREATE INDEX memories_ns_agent ON memories (ns, agent_id);
CREATE INDEX memories_tags ON memories USING gin (tags);
CREATE INDEX memories_tsv ON memories USING gin (tsv);
CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);

-- Versions are owned by their memory: removing a memory row removes its versions (CASCADE).
CREATE TABLE memory_versions (
    ns           text        NOT NULL,
    memory_id    text        NOT NULL,
    version_id   text        NOT NULL,
    parent_ids   text[]      NOT NULL,
    content      text        NOT NULL,
    content_hash text        NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{}',
    reason       text,
    actor        jsonb       NOT NULL,
    command_id   text        NOT NULL,
    event_id     text        NOT NULL,
    seq          bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (ns, memory_id, version_id),
    FOREIGN KEY (ns, memory_id) REFERENCES memories (ns, memory_id) ON DELETE CASCADE
);
CREATE INDEX memory_versions_seq ON memory_versions (ns, memory_id, seq);

-- Every event on a memory, for history and audit views. Owned by the memory (CASCADE).
CREATE TABLE memory_events (
    ns             text        NOT NULL,
    memory_id      text        NOT NULL,
    seq            bigint      NOT NULL,
    event_id       text        NOT NULL UNIQUE,
    type           text        NOT NULL,
    schema         integer     NOT NULL,
    actor          jsonb       NOT NULL,
    command_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    at             timestamptz NOT NULL,
    data           jsonb       NOT NULL,
    PRIMARY KEY (ns, memory_id, seq),
    FOREIGN KEY (ns, memory_id) REFERENCES memories (ns, memory_id) ON DELETE CASCADE
);

-- A link belongs to its source (CASCADE) and cannot outlive its target either (CASCADE):
-- a dangling edge would point at nothing a query could serve.
CREATE TABLE memory_links (
    ns               text        NOT NULL,
    memory_id        text        NOT NULL,
    target_memory_id text        NOT NULL,
    relation         text        NOT NULL,
    actor            jsonb       NOT NULL,
    seq              bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (ns, memory_id, target_memory_id, relation),
    FOREIGN KEY (ns, memory_id) REFERENCES memories (ns, memory_id) ON DELETE CASCADE,
    FOREIGN KEY (ns, target_memory_id) REFERENCES memories (ns, memory_id) ON DELETE CASCADE
);
CREATE INDEX memory_links_target ON memory_links (ns, target_memory_id);

-- Embeddings by (model, content hash): a replay or a repeated text never re-embeds.
-- Untyped vector so several models (dimensions) can share the cache.
CREATE TABLE embedding_cache (
    model        text   NOT NULL,
    content_hash text   NOT NULL,
    embedding    vector NOT NULL,
    PRIMARY KEY (model, content_hash)
);

-- The first result of every command, so a repeated command_id is answered, not re-applied,
-- also after JetStream's duplicate window.
CREATE TABLE command_results (
    ns          text   NOT NULL,
    command_id  text   NOT NULL,
    event_id    text   NOT NULL,
    event_type  text   NOT NULL,
    memory_id   text   NOT NULL,
    version_id  text,
    seq         bigint NOT NULL,
    PRIMARY KEY (ns, command_id)
);

-- Events a consumer gave up on after bounded retries (also published to MNEMOS_DEADLETTER).
CREATE TABLE dead_letters (
    consumer  text        NOT NULL,
    seq       bigint      NOT NULL,
    event_id  text,
    subject   text        NOT NULL,
    error     text        NOT NULL,
    attempts  integer     NOT NULL,
    raw       bytea       NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, seq)
);
