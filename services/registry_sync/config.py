"""Configuration of registry sync and consultations: one typed object, decoded from JSON.

With no provider configured the service idles and says what to set; ``consult`` then answers
:func:`require_consultable`'s error instead of hanging or inventing an answer.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from libs.events.errors import InvalidInput, Unavailable
from libs.llm.factory import ProviderConfig
from services.registry_sync.consensus import ConsensusPolicy
from services.registry_sync.diff import LivenessPolicy
from services.registry_sync.routing import RoutingPolicy

__all__ = ["CONFIG_HINT", "RegistrySyncConfig", "load_registry_config", "require_consultable"]

CONFIG_HINT = ("configure at least one provider in MNEMOS_REGISTRY_CONFIG (a JSON file: "
               '{"providers": [{"name": "openai", "kind": "openai", "base_url": '
               '"https://api.openai.com", "api_key": "..."}]})')
"""What the idle message and the consult error tell the operator to set."""


class RegistrySyncConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of the reasoning layer.

    - ``providers``: the providers to sync and consult (none = idle).
    - ``price_table``: path or URL of a LiteLLM-shaped price/limits JSON (optional).
    - ``price_routes``: provider name -> the table's key prefix (``groq``, ``gemini``,
      ``together_ai``); providers not named look up bare ids.
    - ``leaderboard``: path or URL of the Arena-style export; ``leaderboard_rows_api``: query
      parameters when it is a paged rows API; ``leaderboard_category`` the category to use.
    - ``leaderboard_aliases``: leaderboard name -> model keys or ids (the explicit alias table).
    - ``family_aliases``: model-id glob -> family.
    - ``leaderboard_name``: the ranking source (``mnemos.evt.system.ranking.<name>``).
    - ``provider_interval_s`` (daily) and ``leaderboard_interval_s`` (weekly): the timers,
      checked every ``tick_check_s``; after a failed provider or leaderboard fetch the next
      attempt comes ``retry_failed_s`` later (not a whole interval); ``publish_timeout_s``
      bounds each event's publish and
      ``fold_timeout_s`` the wait until the service has folded what it published.
    """

    providers: tuple[ProviderConfig, ...] = ()
    price_table: str | None = None
    price_routes: dict[str, str] = {}
    leaderboard: str | None = None
    leaderboard_rows_api: dict[str, str] | None = None
    leaderboard_category: str = "overall"
    leaderboard_aliases: dict[str, tuple[str, ...]] = {}
    family_aliases: dict[str, str] = {}
    leaderboard_name: str = "arena"
    provider_interval_s: float = 86_400.0
    leaderboard_interval_s: float = 7 * 86_400.0
    retry_failed_s: float = 900.0
    tick_check_s: float = 1.0
    publish_timeout_s: float = 10.0
    fold_timeout_s: float = 60.0
    liveness: LivenessPolicy = LivenessPolicy()
    routing: RoutingPolicy = RoutingPolicy()
    consensus: ConsensusPolicy = ConsensusPolicy()

    def idle_reason(self) -> str | None:
        """Why the service has nothing to do, or None when a provider is configured."""
        return None if self.providers else f"no LLM provider configured: {CONFIG_HINT}"


def load_registry_config(path: Path | None) -> RegistrySyncConfig:
    """Decode the JSON file at ``path`` (None or absent = the empty, idle configuration)."""
    if path is None or not path.exists():
        return RegistrySyncConfig()
    try:
        config = msgspec.json.decode(path.read_bytes(), type=RegistrySyncConfig)
    except (msgspec.DecodeError, msgspec.ValidationError, InvalidInput) as exc:
        raise InvalidInput(f"registry config {path} is invalid: {exc}") from None
    names = [p.name for p in config.providers]
    if len(set(names)) != len(names):
        raise InvalidInput("provider names must be unique", providers=names)
    return config


def require_consultable(config: RegistrySyncConfig) -> None:
    """Raise :class:`Unavailable` naming what to configure when no provider is set."""
    reason = config.idle_reason()
    if reason is not None:
        raise Unavailable(f"cannot consult: {reason}", missing="providers")
