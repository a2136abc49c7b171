"""The command gateway: validates commands, appends events, and serves namespace-scoped queries.

Layers: :mod:`.domain` (pure decide/evolve rules), :mod:`.event_store` (JetStream adapter),
:mod:`.read_models` and :mod:`.queries` (Postgres adapter, the one query layer),
:mod:`.handlers` (orchestration shared by both transports), :mod:`.nats_transport` and
:mod:`.http_app` (entrypoints), :mod:`.main` (the service).
"""
