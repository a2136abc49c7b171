"""A broker failure that escapes to the gateway's last line of defence is still answered as
``unavailable`` (retry-safe, 503), never ``internal``: during a cluster election a stream has no
leader for seconds, and clients retrying with their command ids must be told to retry."""

from __future__ import annotations

import json

import nats.errors
import pytest
from nats.js.errors import ServiceUnavailableError
from starlette.requests import Request

from libs.events import Unavailable
from libs.eventstore.jetstream import broker_call, broker_failure
from services.command.entrypoints.http import _unexpected


@pytest.mark.parametrize("exc", [
    nats.errors.NoRespondersError(), TimeoutError(), nats.errors.TimeoutError(),
    ServiceUnavailableError(code=503, description="JetStream system temporarily unavailable"),
    nats.errors.ConnectionClosedError(),
])
def test_transport_failures_mean_unavailable(exc: Exception) -> None:
    failure = broker_failure(exc, "get message")
    assert isinstance(failure, Unavailable)
    assert failure.http_status == 503 and "did not answer (get message)" in failure.message


def test_other_errors_are_not_broker_failures() -> None:
    assert broker_failure(ValueError("a bug"), "x") is None
    assert broker_failure(nats.errors.BadSubjectError(), "x") is None


async def test_broker_call_raises_unavailable_from_the_cause() -> None:
    with pytest.raises(Unavailable) as caught:
        async with broker_call("publish"):
            raise nats.errors.NoRespondersError()
    assert isinstance(caught.value.__cause__, nats.errors.NoRespondersError)


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/ns/a/memories",
                    "headers": [], "query_string": b""})


async def test_the_http_last_line_answers_503_for_a_broker_failure() -> None:
    response = await _unexpected(_request(), nats.errors.NoRespondersError())
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["error"]["code"] == "unavailable"


async def test_the_http_last_line_answers_500_for_anything_else() -> None:
    response = await _unexpected(_request(), RuntimeError("a bug"))
    assert response.status_code == 500
    assert json.loads(bytes(response.body))["error"]["code"] == "internal"


async def test_broker_call_leaves_jetstream_answers_to_its_caller() -> None:
    """An append turns JetStream's "insufficient resources" 503 into "no storage left"; the
    transport wrapper must not turn it into a generic "did not answer" first."""
    full = ServiceUnavailableError(code=503, err_code=10023,
                                   description="insufficient resources")
    with pytest.raises(ServiceUnavailableError):
        async with broker_call("publish"):
            raise full
