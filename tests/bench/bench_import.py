"""Bulk import rate against the end-to-end ingest rate of ``bench_spine`` on the same system.

    python -m tests.bench.bench_import [--memories 3000] [--inflight 64]

Both are measured from the first write until the last memory is projected with its embedding
(searchable): first ``bench_spine``'s ingest (``remember`` over NATS, 64 in flight), then
``mnemos import`` of as many plain memory lines (64 memories in flight), then the
same import again (every line already present), then bench_spine's ingest once more (the ratio
uses the mean of both, so warm-up and load drift weigh on both sides). ``mnemos import`` goes
over NATS here (the broker is known); ``--transport http`` is the HTTP path. Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time

from tests.bench.bench_spine import send_commands, wait_projected
from tests.bench.corpus import memory_texts
from tests.bench.harness import BenchSystem, progress, report_line, running_system


async def _spine(system: BenchSystem, args: argparse.Namespace, seed: int) -> float:
    """bench_spine's end-to-end ingest: remember over NATS until projected."""
    progress(f"bench_spine end-to-end ingest of {args.memories} memories")
    began = time.perf_counter()
    _, _, acks = await send_commands(system, memory_texts(args.memories, seed=seed),
                                     args.inflight)
    done = wait_projected(system, max(seq for seq, _ in acks))
    rate = float(args.memories / (done - began))
    report_line("bench_spine end-to-end ingest", f"{rate:,.0f} memories/s")
    return rate


async def main_async(args: argparse.Namespace) -> None:
    with running_system() as system:
        system.start_service("projector")
        system.start_service("command")
        system.wait_gateway()
        report_line("machine", f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
        spine = await _spine(system, args, seed=2)
        source = system.workdir / "import.jsonl"
        source.write_text("".join(json.dumps({"content": text}) + "\n"
                                  for text in memory_texts(args.memories, seed=4)))
        env = {**system.env, "MNEMOS_GATEWAY_URL": f"http://127.0.0.1:{system.config.http_port}",
               "MNEMOS_API_KEY": ""}
        for label in ("mnemos import (new memories)", "mnemos import again (all present)"):
            progress(label)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mnemos", "import", str(source), "--ns", "bench-import",
                "--inflight", str(args.inflight), "--no-progress", env=env,
                stdout=asyncio.subprocess.PIPE)
            out = (await process.communicate())[0].decode()
            if process.returncode != 0:
                raise RuntimeError(f"mnemos import failed ({process.returncode})")
            rate = float(re.sub(r"[^0-9.]", "", out.split(" = ")[1].split()[0]))
            report_line(label, f"{rate:,.0f} memories/s")
            if "again" not in label:
                imported = rate
        # once more after the import, so warm-up and load drift weigh on both sides alike
        spine = (spine + await _spine(system, args, seed=5)) / 2
        report_line("import / bench_spine ingest (mean of before and after)",
                    f"{imported / spine:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=3000)
    parser.add_argument("--inflight", type=int, default=64)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
