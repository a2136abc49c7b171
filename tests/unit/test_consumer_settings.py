"""What a consumer instance may be configured with (libs.consumer.contract.ConsumerSettings)."""

from __future__ import annotations

import pytest

from libs.consumer.contract import ConsumerSettings


async def _never() -> object:
    raise AssertionError("not connected in these tests")


def _settings(**values: object) -> ConsumerSettings:
    return ConsumerSettings(name="c", role="r", schema="s", connect=_never,
                            **values)  # type: ignore[arg-type]


def test_the_batches_in_flight_fit_in_what_the_server_delivers_unacknowledged() -> None:
    assert _settings(batch_size=4096, ahead=1, max_ack_pending=8192).batch_size == 4096
    with pytest.raises(ValueError, match="max_ack_pending 8192"):
        _settings(batch_size=5000, ahead=1, max_ack_pending=8192)
    with pytest.raises(ValueError, match="max_ack_pending"):
        _settings(batch_size=3000, ahead=2, max_ack_pending=8192)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_holds_at_least_one_message(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        _settings(batch_size=batch_size)
