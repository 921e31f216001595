"""Run every benchmark in turn (they must not run in parallel: the machine is small and shared).

Each module prints its own figures; copy them into benchmarks/RESULTS.md.  From the repository
root (``make bench``)::

    python -m benchmarks.run_all            # full sizes
    python -m benchmarks.run_all --quick    # the reduced sizes

Each benchmark runs as ``python -m benchmarks.<name>`` with the repository root as working folder,
so that ``tests.…`` and ``benchmarks.…`` import without touching ``sys.path``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = [
    "bench_encoder",
    "bench_journal",
    "bench_pipeline",
    "bench_modbus",
    "bench_mqtt",
    "bench_analytics_energy",
    "bench_analytics_flex",
]


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for name in ORDER:
        if not (ROOT / "benchmarks" / f"{name}.py").exists():
            continue
        print(f"\n=== {name} {' '.join(extra)} ===", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *extra], cwd=ROOT)
        print(f"=== {name}: exit {rc} in {time.monotonic() - start:.0f} s ===", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
