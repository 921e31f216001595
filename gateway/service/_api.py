"""The gateway's local HTTP API: ``/health`` for a watchdog, ``/status`` (JSON) for ``pedf status``,
``/metrics`` in the Prometheus text exposition format (version 0.0.4) for scraping, and the
endpoints that change state (``POST /reload``).

Access (``api.token`` in the site file): with a token, ``/status``, ``/metrics`` and every endpoint
that changes state require ``Authorization: Bearer <token>`` (RFC 6750 §2.1) and answer 401
otherwise; ``/health`` stays open so that a watchdog needs no secret.  Without a token the reading
endpoints are open and no endpoint that changes state exists at all (404): a gateway that anyone
on the network could reload or command is never the default.  Binding to an address other than
loopback without a token logs a warning.  Everything served is redacted (:mod:`gateway.redact`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.redact import redact_tree
from gateway.service._health import HealthPolicy, health_reasons
from gateway.service._status import GatewayStatus

log = logging.getLogger("pedf.api")

#: an endpoint that changes state: its JSON answer, or raises ``web.HTTPException``
Control = Callable[[web.Request], Awaitable[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    out.append(f"pedf_healthy {int(not status.get('health'))}")
    _flatten("pedf_journal", status["journal"], "", out)
    for name, dev in status["devices"].items():
        _flatten("pedf_device", dev, f'{{device="{name}"}}', out)
    for name, sink in status["sinks"].items():
        _flatten("pedf_sink", sink, f'{{sink="{name}"}}', out)
    return "\n".join(out) + "\n"


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def bearer_ok(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _unauthorized() -> web.Response:
    return web.json_response({"error": "this endpoint requires Authorization: Bearer <api.token>"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="pedf"'})


def build_app(status: Callable[[], GatewayStatus], *, token: str | None = None,
              health: HealthPolicy | Callable[[], HealthPolicy] = HealthPolicy(),
              controls: Mapping[str, Control] | None = None) -> web.Application:
    """The application: reading endpoints always, ``controls`` (POST) only when a token is set.
    ``health`` may be a callable, so that thresholds changed by a reload apply at once."""
    policy = health if callable(health) else (lambda: health)

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            if token is not None and not bearer_ok(request.headers.get("Authorization"), token):
                return _unauthorized()
            return await handler(request)
        return check

    async def health_doc(_: web.Request) -> web.Response:
        st = status()
        reasons = health_reasons(st, time.time_ns(), policy())
        body = {"healthy": not reasons, "reasons": redact_tree(reasons), "devices_up": st.devices_up,
                "devices_total": st.devices_total}
        return web.json_response(body, status=503 if reasons else 200)

    async def status_doc(_: web.Request) -> web.Response:
        return web.json_response(redact_tree(status().to_json()))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=metrics_text(status().to_json()), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/health", health_doc)
    app.router.add_get("/status", guarded(status_doc))
    app.router.add_get("/metrics", guarded(metrics))
    if token is not None:
        for path, control in (controls or {}).items():
            async def run(request: web.Request, control: Control = control) -> web.Response:
                return web.json_response(redact_tree(await control(request)))
            app.router.add_post(path, guarded(run))
    return app


def warn_if_exposed(host: str, token: str | None, port: int) -> None:
    if token is None and not is_loopback(host):
        log.warning("the HTTP API listens on %s:%s without api.token: anyone who reaches it reads the "
                    "gateway's status; set api.token (or bind api.host to 127.0.0.1)", host, port,
                    extra={"fields": {"host": host, "port": port}})


async def serve_api(status: Callable[[], GatewayStatus], host: str, port: int, bound: asyncio.Future[int], *,
                    token: str | None = None, health: HealthPolicy | Callable[[], HealthPolicy] = HealthPolicy(),
                    controls: Mapping[str, Control] | None = None) -> None:
    """Serve until cancelled; ``bound`` gets the port once listening.  The runner is cleaned up in
    ``finally``, whatever ends the task."""
    warn_if_exposed(host, token, port)
    runner = web.AppRunner(build_app(status, token=token, health=health, controls=controls), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        bound.set_result(sockets[0].getsockname()[1] if sockets else port)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()


__all__ = ["Control", "bearer_ok", "build_app", "is_loopback", "metrics_text", "serve_api"]
