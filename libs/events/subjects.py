"""Subject builders and parsers: the only place that knows how subjects are spelled."""

from __future__ import annotations

from typing import Final

from libs.events.errors import InvalidInput
from libs.events.tokens import validate_id, validate_namespace, validate_token

__all__ = [
    "COMMAND_QUEUE_GROUP",
    "COMMAND_WILDCARD",
    "DEADLETTER_WILDCARD",
    "EVENT_WILDCARD",
    "QUERY_QUEUE_GROUP",
    "QUERY_WILDCARD",
    "command_subject",
    "deadletter_subject",
    "event_subject",
    "parse_command_subject",
    "parse_query_subject",
    "query_subject",
    "service_queue_group",
    "service_subject",
]

EVENT_PREFIX: Final = "mnemos.evt"
COMMAND_PREFIX: Final = "mnemos.cmd"
DEADLETTER_PREFIX: Final = "mnemos.dlq"
QUERY_PREFIX: Final = "mnemos.qry"
SERVICE_PREFIX: Final = "mnemos.svc"
"""Internal request subjects ``mnemos.svc.<service>.<operation>``: the gateway forwards the
operations other services own there (only services may publish them)."""

EVENT_WILDCARD: Final = f"{EVENT_PREFIX}.>"
"""Every event subject; the subjects of the ``MNEMOS_EVENTS`` stream."""

COMMAND_WILDCARD: Final = f"{COMMAND_PREFIX}.*.*"
"""Every command subject: ``mnemos.cmd.<ns>.<command>``."""

QUERY_WILDCARD: Final = f"{QUERY_PREFIX}.*.*"
"""Every query subject: ``mnemos.qry.<ns>.<query>`` (request-reply, answered by the gateway)."""

QUERY_QUEUE_GROUP: Final = "mnemos-query"
"""Queue group of the gateway's query subscription."""

DEADLETTER_WILDCARD: Final = f"{DEADLETTER_PREFIX}.>"
"""Every dead-letter subject; the subjects of the ``MNEMOS_DEADLETTER`` stream."""

COMMAND_QUEUE_GROUP: Final = "mnemos-command"
"""Queue group of the gateway's command subscription, so instances share the load."""


def event_subject(ns: str, aggregate: str, aggregate_id: str) -> str:
    """``mnemos.evt.<ns>.<aggregate>.<aggregate_id>``, each token validated."""
    return ".".join(
        (
            EVENT_PREFIX,
            validate_namespace(ns),
            validate_token(aggregate, "aggregate"),
            validate_id(aggregate_id, "aggregate_id"),
        )
    )


def command_subject(ns: str, command: str) -> str:
    """``mnemos.cmd.<ns>.<command>``, each token validated."""
    return f"{COMMAND_PREFIX}.{validate_namespace(ns)}.{validate_token(command, 'command')}"


def parse_command_subject(subject: str) -> tuple[str, str]:
    """Split a command subject into validated ``(namespace, command)``."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:2]) != COMMAND_PREFIX:
        raise InvalidInput("not a command subject", subject=subject[:200])
    return validate_namespace(parts[2]), validate_token(parts[3], "command")


def query_subject(ns: str, query: str) -> str:
    """``mnemos.qry.<ns>.<query>``, each token validated."""
    return f"{QUERY_PREFIX}.{validate_namespace(ns)}.{validate_token(query, 'query')}"


def parse_query_subject(subject: str) -> tuple[str, str]:
    """Split a query subject into validated ``(namespace, query)``."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:2]) != QUERY_PREFIX:
        raise InvalidInput("not a query subject", subject=subject[:200])
    return validate_namespace(parts[2]), validate_token(parts[3], "query")


def deadletter_subject(consumer: str, ns: str) -> str:
    """``mnemos.dlq.<consumer>.<ns>``: where a consumer parks events it cannot process."""
    return f"{DEADLETTER_PREFIX}.{validate_token(consumer, 'consumer')}.{validate_namespace(ns)}"


def service_subject(service: str, operation: str) -> str:
    """``mnemos.svc.<service>.<operation>``, each token validated."""
    return (f"{SERVICE_PREFIX}.{validate_token(service, 'service')}."
            f"{validate_token(operation, 'operation')}")


def service_queue_group(service: str) -> str:
    """Queue group of a service's internal subscription (its instances share requests)."""
    return f"mnemos-svc-{validate_token(service, 'service')}"
