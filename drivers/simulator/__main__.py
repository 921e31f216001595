"""Command line: ``python -m drivers.simulator --devices devices.json [--speed 1440] [--seed 1] ...``.

devices.json is a list of devices, or a mapping with "devices" and optionally "faults":
``[{"name": "grid", "profile": "dtsu666", "port": 15020, "unit_id": 1, "role": "grid_meter"}]``.
Prints "ready" on stdout once every port listens; runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import datetime
from pathlib import Path

from drivers.simulator.server import FAULTS, SimulatedDevice, serve


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m drivers.simulator", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=Path, required=True, help="JSON file with the devices to serve")
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (0 = frozen)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--start-time",
        type=datetime.fromisoformat,
        default=None,
        help="simulated start, ISO 8601 with offset (default: today 00:00 Asia/Shanghai)",
    )
    ap.add_argument("--step", type=float, default=10.0, help="physics step, simulated seconds")
    ap.add_argument("--hold", type=float, default=0.0, help="wall seconds to hold time at the start")
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds after which time stops")
    ap.add_argument("--poll-log", type=Path, default=None, help="append one line per served read")
    ap.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="DEVICE=KIND",
        help=f"inject a fault, KIND one of {', '.join(FAULTS)}",
    )
    ap.add_argument(
        "--faults-file",
        type=Path,
        default=None,
        help='JSON {"device": "kind"}, re-read while serving: faults come and go with its content',
    )
    ap.add_argument(
        "--totals", type=Path, default=None, help="JSON file kept up to date with the model's totals"
    )
    return ap.parse_args(argv)


def load_devices(path: Path) -> tuple[list[SimulatedDevice], dict[str, str]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    faults: dict[str, str] = {}
    if isinstance(raw, dict):
        faults = dict(raw.get("faults") or {})
        raw = raw["devices"]
    return [SimulatedDevice(**d) for d in raw], faults


async def _run(args: argparse.Namespace) -> None:
    devices, faults = load_devices(args.devices)
    for item in args.fault:
        name, _, kind = item.partition("=")
        faults[name] = kind
    base = dict(faults)  # --fault flags and devices.json: always on; the faults file adds to them
    if args.faults_file is not None:
        faults.update(_read_faults(args.faults_file))
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(serve(
            devices,
            speed=args.speed,
            seed=args.seed,
            start_time=args.start_time,
            poll_log=args.poll_log,
            faults=faults,
            step_s=args.step,
            hold_s=args.hold,
            duration_s=args.duration,
            totals_path=args.totals,
            ready=ready,
        ), name="serve")
        helpers = [group.create_task(_announce(ready), name="announce"),
                   group.create_task(stop.wait(), name="stop")]
        if args.faults_file is not None:
            helpers.append(group.create_task(_watch(args.faults_file, base, faults), name="faults"))
        await asyncio.wait({serving, helpers[1]}, return_when=asyncio.FIRST_COMPLETED)
        for task in (serving, *helpers):
            task.cancel()


async def _announce(ready: asyncio.Event) -> None:
    """Tell the parent process the devices listen (it reads this line from our stdout)."""
    await ready.wait()
    print("ready", flush=True)


def _read_faults(path: Path) -> dict[str, str]:
    """The faults file's entries with a known kind; a missing or half-written file means none."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if v in FAULTS}


async def _watch(path: Path, base: dict[str, str], live: dict[str, str]) -> None:
    """Poll the faults file's mtime and swap the live fault table in place when it changes."""
    seen: float | None = None
    while True:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime != seen:
            seen = mtime
            live.clear()
            live.update(base)
            live.update(_read_faults(path))
        await asyncio.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    failed = False
    try:
        asyncio.run(_run(args))
    except* (OSError, ValueError, KeyError, TypeError) as group:
        for exc in group.exceptions:
            print(f"simulator: {exc}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
