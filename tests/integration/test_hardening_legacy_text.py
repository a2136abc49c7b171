"""Events written by older versions that hold text Postgres cannot store (U+0000) still project
deterministically (issue 10, defect 1): no dead letter, the same read models on replay, and the
auditor's verification agrees with what is served."""

from __future__ import annotations

import pytest

from libs.events.text import REPLACEMENT as REPLACEMENT_CHARACTER
from libs.runtime.config import Config
from services.auditor.verify import verify
from services.projector.replay import replay
from tests.support.auditor import running_auditor, wait_for_head
from tests.support.events import (
    History,
    publish_all,
    read_models,
    rows,
    running_projector,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration


async def test_legacy_nul_text_projects_deterministically(config: Config, nats_js) -> None:
    url = config.database_url or ""
    h = History()
    created = h.created("before\u0000after", metadata={"note": "x\u0000y", "n": 1e20},
                        source="chat\u0000")
    mid = created.aggregate_id
    events = [created, h.revised(mid, "second\u0000", reason="why\u0000"),
              h.metadata_changed(mid, {"k\u0000": "v\u0000"}), h.forgotten(mid, "gone\u0000")]
    async with running_projector(config), running_auditor(config):
        last = await publish_all(nats_js, events)
        await wait_checkpoint(url, last)
        await wait_for_head(config, last)
        async with read_models(url) as conn:
            letters = await rows(conn, "SELECT seq, error FROM dead_letters")
            memory = (await rows(conn, "SELECT content, metadata, source, forgotten_reason"
                                       " FROM memories"))[0]
            versions = await rows(conn, "SELECT content, reason FROM memory_versions ORDER BY seq")
        assert letters == []
        assert memory["content"] == f"second{REPLACEMENT_CHARACTER}"
        assert memory["metadata"] == {"note": f"x{REPLACEMENT_CHARACTER}y", "n": 1e20,
                                      f"k{REPLACEMENT_CHARACTER}": f"v{REPLACEMENT_CHARACTER}"}
        assert memory["source"] == f"chat{REPLACEMENT_CHARACTER}"
        assert memory["forgotten_reason"] == f"gone{REPLACEMENT_CHARACTER}"
        assert [v["reason"] for v in versions] == [None, f"why{REPLACEMENT_CHARACTER}"]
        report = await verify(config, full=True)
        assert report.ok, report
        rebuilt = await replay(config, swap=False, progress=False)
        assert rebuilt.verified is True, rebuilt.summary()
