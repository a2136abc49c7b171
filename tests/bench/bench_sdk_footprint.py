"""The SDK's footprint: install ``sdk/`` into a fresh venv and measure what it adds to
site-packages and how long ``import mnemos_sdk`` takes (median of 5 fresh interpreters).

    python -m tests.bench.bench_sdk_footprint [--extra mcp]

Needs the package index pip is configured with. Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.harness import progress, report_line

SDK = Path(__file__).resolve().parents[2] / "sdk"


def _size_kb(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extra", default="", help="An extra to install too (mcp).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mnemos-sdk-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        site = next((venv / "lib").glob("python*/site-packages"))
        before = _size_kb(site)
        target = f"{SDK}[{args.extra}]" if args.extra else str(SDK)
        progress(f"pip install {target}")
        subprocess.run([str(python), "-m", "pip", "install", "-q", target], check=True)
        added = _size_kb(site) - before
        code = ("import time; t = time.perf_counter(); import mnemos_sdk; "
                "print((time.perf_counter() - t) * 1000)")
        times = [float(subprocess.run([str(python), "-c", code], check=True, cwd=tmp,
                                      capture_output=True, text=True).stdout)
                 for _ in range(5)]
        frozen = subprocess.run([str(python), "-m", "pip", "freeze"], check=True,
                                capture_output=True, text=True).stdout.split()
    report_line(f"mnemos-sdk{'[' + args.extra + ']' if args.extra else ''} installed size",
                f"{added / 1024:.1f} MB ({len(frozen)} distributions)")
    report_line("import mnemos_sdk (median of 5)", f"{statistics.median(times):.0f} ms")


if __name__ == "__main__":
    main()
