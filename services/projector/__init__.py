"""The projector: folds the event stream into the Postgres + pgvector read models."""
