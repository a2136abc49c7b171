"""A real local HTTP server that replays recorded provider responses (tests/fixtures/providers).

See :class:`ReplayServer`.
"""

from tests.support_http.server import Recorded, RecordedRequest, ReplayServer, load_recorded

__all__ = ["Recorded", "RecordedRequest", "ReplayServer", "load_recorded"]
