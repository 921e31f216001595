"""The floor: a bare pymodbus client polling N devices × 60 holding registers once per second,
one connection per device, nothing done with the answers.  Prints its own CPU-seconds and polls.

    python -m benchmarks.bare_pymodbus --ports-file ports.json --seconds 20 [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient


async def poll_device(client: AsyncModbusTcpClient, counter: list[int], stop_at: float, interval: float) -> None:
    while True:
        now = time.time()
        nxt = math.ceil(now / interval) * interval
        if nxt >= stop_at:
            return
        await asyncio.sleep(nxt - now)
        rr = await client.read_holding_registers(0, count=60, device_id=1)
        if not rr.isError() and len(rr.registers) == 60:
            counter[0] += 1


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports-file", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ports = json.loads(args.ports_file.read_text())
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2) for p in ports]
    await asyncio.gather(*(c.connect() for c in clients))
    counter = [0]
    warm_end = time.time() + args.warmup
    await asyncio.gather(*(poll_device(c, counter, warm_end, args.interval) for c in clients))
    polls0, cpu0, t0 = counter[0], time.process_time(), time.monotonic()
    end = time.time() + args.seconds
    await asyncio.gather(*(poll_device(c, counter, end, args.interval) for c in clients))
    cpu, wall, polls = time.process_time() - cpu0, time.monotonic() - t0, counter[0] - polls0
    for c in clients:
        c.close()
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "polls": polls}))


if __name__ == "__main__":
    asyncio.run(main())
