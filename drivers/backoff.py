"""Capped exponential backoff with full jitter — the one retry schedule of the whole project.

``delay = uniform(0, min(cap, base · 2^attempt))`` ("Exponential Backoff And Jitter", M. Brooker, AWS
Architecture Blog, 2015): full jitter spreads the retries of many clients (a thousand Modbus devices
behind one converter, several gateways behind one broker) so that they do not arrive in lockstep
after an outage, and the cap bounds how long a recovered peer waits to be used again.

Used by Modbus retries, sink retries (InfluxDB and the MQTT publisher, through the delivery loop) and
MQTT reconnects.
"""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff", "full_jitter"]


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 62))
    return (rng or random).uniform(0.0, ceiling)


class Backoff:
    """The schedule of one retrying activity: ``await backoff.sleep()`` after a failure,
    ``backoff.reset()`` after a success."""

    __slots__ = ("attempt", "base_s", "cap_s", "rng")

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        self.base_s, self.cap_s, self.rng = base_s, cap_s, rng
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next retry; each call counts one more failed attempt."""
        delay = full_jitter(self.attempt, self.base_s, self.cap_s, self.rng)
        self.attempt += 1
        return delay

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
