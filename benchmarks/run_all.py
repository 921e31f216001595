"""Run every benchmark in turn (they must not run in parallel: the machine is small and shared).

Each script prints its own figures; copy them into benchmarks/RESULTS.md with this command.
``python benchmarks/run_all.py --quick`` runs the reduced sizes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_encoder.py",
    "bench_journal.py",
    "bench_pipeline.py",
    "bench_modbus.py",
    "bench_mqtt.py",
    "bench_analytics_energy.py",
    "bench_analytics_flex.py",
]


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} {' '.join(extra)} ===", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, str(script), *extra])
        print(f"=== {name}: exit {rc} in {time.monotonic() - start:.0f} s ===", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
