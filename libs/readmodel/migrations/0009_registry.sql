-- Read models of the reasoning layer (design section 7): the model registry, each provider's
-- last sync, leaderboard publications, consultations, and the log of every registry and
-- consultation event. Projected from events like everything else: `mnemos replay` rebuilds
-- them, the digest covers them, verification folds registry_events and compares.
-- Values are `json` (exact text: prices such as 1.5e-07 keep their spelling), keys sorted.

-- One model at one provider (key = '<provider>/<model id>'). `record` holds the catalogue
-- fields of ModelRecordData except key/provider/model_id/sources; `sources` says where each
-- came from; family and capabilities are copied out for filters.
CREATE TABLE registry_models (
    key            text        PRIMARY KEY,
    aggregate_id   text        NOT NULL UNIQUE,
    provider       text        NOT NULL,
    model_id       text        NOT NULL,
    family         text        NOT NULL,
    capabilities   text[]      NOT NULL,
    record         json        NOT NULL,
    sources        json        NOT NULL,
    liveness       text        NOT NULL CHECK (liveness IN ('active', 'suspect', 'retired')),
    missing_syncs  integer     NOT NULL,
    suspect_reason text,
    suspect_detail text,
    retired_reason text,
    stale          boolean     NOT NULL,
    ranking        json,       -- RankingEntryData of the latest publication matching it
    listed_seq     bigint      NOT NULL,
    updated_seq    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX registry_models_provider ON registry_models (provider, key);
CREATE INDEX registry_models_family ON registry_models (family);
CREATE INDEX registry_models_liveness ON registry_models (liveness);

-- The last sync outcome of each provider (the full history is registry_events).
CREATE TABLE registry_providers (
    provider        text        PRIMARY KEY,
    last_seq        bigint      NOT NULL,
    last_outcome    text        NOT NULL CHECK (last_outcome IN ('synced', 'failed')),
    last_synced_seq bigint,
    last_synced_at  timestamptz,
    last_failed_seq bigint,
    last_failed_at  timestamptz,
    last_error      json,       -- ProviderSyncFailedData of the last failure
    last_sync       json        -- ProviderSyncedData of the last success
);

-- The latest publication of each leaderboard source and category.
CREATE TABLE registry_rankings (
    source    text        NOT NULL,
    category  text        NOT NULL,
    seq       bigint      NOT NULL,
    at        timestamptz NOT NULL,
    data      json        NOT NULL,  -- RankingPublishedData
    PRIMARY KEY (source, category)
);

-- One consultation per (namespace, id); its steps are the registry_events rows of it.
CREATE TABLE registry_consultations (
    ns              text        NOT NULL,
    consultation_id text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('running', 'reached', 'abstained')),
    prompt          text        NOT NULL,
    profile         text        NOT NULL,
    planned         text[]      NOT NULL,
    answers         integer     NOT NULL,
    failures        integer     NOT NULL,
    result          json,       -- ConsensusReachedData / ConsensusAbstainedData
    started_seq     bigint      NOT NULL,
    started_at      timestamptz NOT NULL,
    updated_seq     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (ns, consultation_id)
);

-- Every registry and consultation event as projected (the sync log is its Provider* rows).
CREATE TABLE registry_events (
    seq          bigint      PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    ns           text        NOT NULL,
    aggregate    text        NOT NULL,
    aggregate_id text        NOT NULL,
    type         text        NOT NULL,
    schema       integer     NOT NULL,
    actor        json        NOT NULL,
    command_id   text        NOT NULL,
    at           timestamptz NOT NULL,
    data         json        NOT NULL
);
CREATE INDEX registry_events_aggregate ON registry_events (ns, aggregate, aggregate_id, seq);
CREATE INDEX registry_events_type ON registry_events (type, seq);
