"""Typed configuration, loaded once from ``MNEMOS_*`` environment variables.

Every field is documented here and in the README's configuration table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from libs.events.errors import InvalidInput
from libs.events.stream import DEFAULT_DUPLICATE_WINDOW_S

__all__ = ["Config", "client_config", "load_config", "with_identity"]


class Config(BaseModel, frozen=True):
    """Settings of a Mnemos process. Environment variable = ``MNEMOS_`` + upper-case name."""

    home: Path = Field(
        default=Path("~/.mnemos").expanduser(),
        description="Data directory of the embedded NATS store and embedded Postgres cluster.",
    )
    nats_url: str | None = Field(
        default=None, description="External NATS URL; unset = start the embedded nats-server."
    )
    nats_port: int = Field(default=4222, description="Port of the embedded nats-server.")
    nats_identity: str | None = Field(
        default=None,
        description="Broker identity this process connects as (its nkey seed is "
        "MNEMOS_HOME/secrets/nats/<identity>.nk); each service and the CLI default to their own.",
    )
    nats_sync_interval: str = Field(
        default="always",
        description="Embedded nats-server fsync policy: 'always' (fsync every write; no "
        "acknowledged event lost on power loss) or a duration such as '2m' (NATS default).",
    )
    nats_tls_ca: Path | None = Field(
        default=None,
        description="CA certificate (PEM) that verifies the broker's TLS certificate; set it "
        "when the broker requires TLS (the cluster in deploy/nats). MNEMOS_NATS_URL may list "
        "several servers, comma-separated.",
    )
    database_url: str | None = Field(
        default=None,
        description="External Postgres (>= 15 with pgvector) URL; unset = embedded Postgres.",
    )
    db_schema: str = Field(
        default="mnemos", pattern=r"^[a-z_][a-z0-9_]{0,40}$",
        description="Postgres schema holding the read models (replay builds a sibling and swaps).",
    )
    http_host: str = Field(default="127.0.0.1", description="Gateway HTTP bind address.")
    http_port: int = Field(default=8080, description="Gateway HTTP port.")
    metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="Port of /metrics, /healthz and /readyz of a projector, auditor, compressor "
        "or registry_sync process (0 = off; the gateway serves them on its HTTP port). "
        "`mnemos up` uses HTTP port + 1 to + 4.",
    )
    stream_replicas: int = Field(
        default=1, description="Replicas of the event stream (3 in a cluster)."
    )
    duplicate_window_s: float = Field(
        default=DEFAULT_DUPLICATE_WINDOW_S, ge=120.0,
        description="JetStream duplicate window in seconds (>= 120).",
    )
    embedder: Literal["minilm-onnx", "openai"] = Field(
        default="minilm-onnx",
        description="Embedding backend: offline all-MiniLM-L6-v2 int8 ONNX, or an "
        "OpenAI-compatible /v1/embeddings endpoint.",
    )
    embedder_url: str | None = Field(
        default=None, description="Base URL of the OpenAI-compatible embedder."
    )
    embedder_api_key: str | None = Field(
        default=None, description="Bearer token of that embedder."
    )
    embedder_model: str = Field(
        default="text-embedding-3-small", description="Remote model name."
    )
    embedder_dim: int = Field(
        default=384, description="Vector dimension asked of the remote embedder."
    )
    max_content_bytes: int = Field(
        default=65_536, description="Largest memory content accepted (UTF-8 bytes)."
    )
    max_request_bytes: int = Field(default=262_144, description="Largest command body accepted.")
    hnsw_ef_search: int = Field(
        default=400, ge=10, le=1000,
        description="Candidate list of the HNSW scan behind dense search: higher finds more of "
        "the exact nearest neighbours, slower. The default meets recall@10 >= 0.95 on the "
        "benchmark's hard synthetic corpus; real sentences reach 0.99 at 100.",
    )
    read_your_writes_timeout_s: float = Field(
        default=5.0, description="Longest a query with after_seq waits for the projection."
    )
    audit_checkpoint_events: int = Field(
        default=10_000, ge=1,
        description="The auditor signs a checkpoint of the chain head every this many events.",
    )
    audit_checkpoint_interval_s: float = Field(
        default=60.0, gt=0,
        description="… or this many seconds after the last checkpoint, if new events arrived.",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="The auditor's Ed25519 signing key (PEM, must be 0600; created on first "
        "start); unset = MNEMOS_HOME/audit/auditor-ed25519.key. Its public key is written next "
        "to it as <name>.pub. Never stored in the database.",
    )
    auth: Literal["on", "off"] = Field(
        default="on",
        description="Authentication and authorization of every request (API keys, OIDC bearer "
        "tokens) and broker identities under `mnemos up`; 'off' is anonymous access (the "
        "principal is whatever the caller asserts), printed loudly at start.",
    )
    oidc_issuer: str | None = Field(
        default=None, description="OIDC issuer whose bearer tokens are accepted (unset: none).")
    oidc_audience: str | None = Field(
        default=None, description="Audience (`aud`) the OIDC tokens must carry.")
    oidc_jwks_url: str | None = Field(
        default=None, description="JWKS URL of the issuer (default: its discovery document).")
    oidc_principal_claim: str = Field(
        default="sub", description="Claim naming the principal of an OIDC token.")
    oidc_grants_claim: str = Field(
        default="mnemos_grants",
        description="Claim listing the token's grants as 'scope:namespace' strings.")
    key_cache_s: float = Field(
        default=5.0, gt=0, le=300,
        description="How long a gateway reuses a looked-up API key: the bound on how late a "
        "revocation takes effect on an instance that misses the revocation event.")
    stream_consumers_s: float = Field(
        default=15.0, gt=0, le=3600,
        description="How often the gateway asks the broker for every durable consumer on the "
        "event stream (third-party ones included) and exports its lag as metrics.")
    compress_min_tokens: int = Field(
        default=96, ge=1,
        description="The compressor compresses every new version of at least this many tokens "
        "(cl100k_base); shorter ones gain too little.")
    compressor_llm_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL of the compressor's optional LLM "
        "engine (unset: offline engines only).")
    compressor_llm_model: str = Field(
        default="gpt-4o-mini", description="Chat model of the compressor's LLM engine.")
    compressor_llm_api_key: str | None = Field(
        default=None, description="Bearer token of that endpoint.")
    compressor_llm_timeout_s: float = Field(
        default=20.0, gt=0, le=300,
        description="Longest the compressor waits on one LLM compression (offline receipts "
        "never wait for it).")
    compressor_ack_wait_s: float = Field(
        default=30.0, ge=1.0, le=3600,
        description="A version taken by a compressor instance that dies is compressed by "
        "another after this long (JetStream ack wait of the shared consumer).")
    registry_config: Path | None = Field(
        default=None,
        description="The reasoning layer's configuration (JSON: providers, price table, "
        "leaderboard, intervals; see README 'Reasoning layer'); unset = "
        "MNEMOS_HOME/registry.json if it exists, else no provider (registry_sync idles).")
    log_format: Literal["console", "json"] = Field(default="console", description="Log renderer.")
    log_level: str = Field(default="info", description="Minimum log level.")
    # Retrieval (issue 12; README "Retrieval" gives the evidence behind each default).
    search_candidates: int = Field(
        default=100, ge=10, le=1000,
        description="Candidates each retrieval side (dense, lexical) contributes to the fusion, "
        "whatever k is, so a top-5 is the first five of the top-10.")
    search_dense_weight: float = Field(
        default=0.4, ge=0.0, le=1.0,
        description="Weight of the dense side's min-max normalised score in the fusion.")
    search_lexical_weight: float = Field(
        default=0.6, ge=0.0, le=1.0,
        description="Weight of the lexical (BM25) side's min-max normalised score.")
    search_prefix_matching: bool = Field(
        default=False,
        description="Also match the longer words a query's last word starts (broke -> broken; "
        "at most 5, the commonest). Off: it cost 0.004-0.006 evidence recall@10 on the "
        "development set.")
    search_context_pool: int = Field(
        default=30, ge=0, le=200,
        description="How many of the best fused candidates lend score to their thread "
        "neighbours (0: threads do not inform ranking).")
    search_context_after_share: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Share of a candidate's score added to the next turn of its thread.")
    search_context_before_share: float = Field(
        default=0.1, ge=0.0, le=1.0,
        description="Share of a candidate's score added to the previous turn of its thread.")
    search_recency_weight: float = Field(
        default=0.3, ge=0.0, le=1.0,
        description="With prefer_recent, how much of a score depends on age: an old memory "
        "keeps 1 - weight of it.")
    search_recency_half_life_days: float = Field(
        default=30.0, gt=0.0, le=36_500.0,
        description="Default age (days) at which the recency boost halves (a search may pass "
        "half_life_days).")


def load_config(**overrides: object) -> Config:
    """Build the configuration from ``MNEMOS_*`` variables, then ``overrides``."""
    values: dict[str, object] = {}
    for name in Config.model_fields:
        raw = os.environ.get(f"MNEMOS_{name.upper()}")
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidInput(f"invalid configuration: {exc}") from None


def with_identity(config: Config, identity: str) -> Config:
    """``config`` connecting to the broker as ``identity`` unless one is configured."""
    return config if config.nats_identity else config.model_copy(
        update={"nats_identity": identity})


def client_config(**overrides: object) -> Config:
    """The configuration of an operator command or local client: :func:`load_config`, with the
    NATS and database URLs of the ``mnemos up`` running on the home filled in where they are not
    configured. The one place that reads the runtime file; the environment is never rewritten.
    """
    from libs.runtime.instance import read_runtime

    config = with_identity(load_config(**overrides), "operator")
    running = read_runtime(config.home)
    if running is None:
        return config
    return config.model_copy(update={
        "nats_url": config.nats_url or running.nats_url,
        "database_url": config.database_url or running.database_url,
    })
