"""The gateway's local HTTP API: ``/health`` for a watchdog, ``/status`` (JSON) for ``pedf status``,
``/metrics`` in the Prometheus text exposition format (version 0.0.4) for scraping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web


def _flatten(prefix: str, value: Any, labels: str, out: list[str]) -> None:
    if isinstance(value, bool):
        out.append(f"{prefix}{labels} {int(value)}")
    elif isinstance(value, int | float) and value == value:
        out.append(f"{prefix}{labels} {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k.replace("_", "").isalnum():
                _flatten(f"{prefix}_{k}", v, labels, out)


def metrics_text(status: dict) -> str:
    out: list[str] = []
    for key in ("samples", "samples_per_s", "overruns", "commit_failures", "devices_up", "devices_total", "uptime_s"):
        out.append(f"pedf_{key} {status[key]}")
    _flatten("pedf_journal", status["journal"], "", out)
    for name, dev in status["devices"].items():
        _flatten("pedf_device", dev, f'{{device="{name}"}}', out)
    for name, sink in status["sinks"].items():
        _flatten("pedf_sink", sink, f'{{sink="{name}"}}', out)
    return "\n".join(out) + "\n"


async def serve_api(status: Callable[[], dict[str, Any]], host: str, port: int, bound: asyncio.Future[int]) -> None:
    """Serve until cancelled; ``bound`` gets the port once listening.  The runner is cleaned up in
    ``finally``, whatever ends the task."""

    async def health(_: web.Request) -> web.Response:
        st = status()
        healthy = st["devices_up"] > 0 or st["devices_total"] == 0
        return web.json_response({"healthy": healthy, "devices_up": st["devices_up"]}, status=200 if healthy else 503)

    async def status_doc(_: web.Request) -> web.Response:
        return web.json_response(status())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=metrics_text(status()), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/status", status_doc)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        bound.set_result(sockets[0].getsockname()[1] if sockets else port)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()
