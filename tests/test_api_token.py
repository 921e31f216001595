"""The HTTP API's access: with ``api.token``, ``/status``, ``/metrics`` and ``POST /reload`` need
``Authorization: Bearer``; ``/health`` stays open; without a token nothing that changes state exists;
a bind beyond loopback without a token is warned about; ``pedf status`` sends the token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.config import load_site
from gateway.errors import ConfigError
from gateway.journal import JournalStats
from gateway.service import GatewayStatus
from gateway.service._api import bearer_ok, build_app, is_loopback, serve_api
from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port

TOKEN = "0123456789abcdef-api-token"


def _pedf() -> str:
    return str(Path(sys.executable).with_name("pedf"))


def _status(devices_up: int = 1) -> GatewayStatus:
    journal = JournalStats(rows=0, bytes=0, head_seq=0, pending=0, appended=0, committed=0, commits=0,
                           failed_commits=0, dropped_rows=0, dropped_undelivered=0)
    return GatewayStatus(site="s", uptime_s=1.0, devices={}, devices_up=devices_up, devices_total=1, samples=0,
                         samples_per_s=0.0, overruns=0, commit_failures=0, journal=journal, sinks={})


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _codes(base: str, token: str | None) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        for method, path in (("GET", "/health"), ("GET", "/status"), ("GET", "/metrics"), ("POST", "/reload")):
            async with http.request(method, base + path) as resp:
                out[f"{method} {path}"] = resp.status
    return out


async def test_with_a_token_reading_and_control_need_it_and_health_stays_open() -> None:
    reloads: list[int] = []

    async def reload(_: web.Request) -> dict:
        reloads.append(1)
        return {"reloaded": True}

    app = build_app(lambda: _status(), token=TOKEN, controls={"/reload": reload})
    async with _serve(app) as base:
        assert await _codes(base, None) == {"GET /health": 200, "GET /status": 401, "GET /metrics": 401,
                                            "POST /reload": 401}
        assert await _codes(base, "wrong-token-wrong-token") == {"GET /health": 200, "GET /status": 401,
                                                                 "GET /metrics": 401, "POST /reload": 401}
        assert not reloads
        assert await _codes(base, TOKEN) == {"GET /health": 200, "GET /status": 200, "GET /metrics": 200,
                                             "POST /reload": 200}
        assert reloads == [1]
        async with aiohttp.ClientSession() as http, http.get(base + "/status") as resp:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "Bearer" in (await resp.json())["error"]


async def test_without_a_token_nothing_that_changes_state_exists() -> None:
    async def reload(_: web.Request) -> dict:
        raise AssertionError("must not be reachable")

    async with _serve(build_app(lambda: _status(), token=None, controls={"/reload": reload})) as base:
        codes = await _codes(base, None)
        assert codes["GET /status"] == 200 and codes["GET /metrics"] == 200 and codes["GET /health"] == 200
        assert codes["POST /reload"] in (404, 405)


def test_bearer_header_parsing_and_loopback_addresses() -> None:
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN) and bearer_ok(f"bearer  {TOKEN} ", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "):
        assert not bearer_ok(header, TOKEN)
    for host in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "gateway.local"):
        assert not is_loopback(host), host


async def test_binding_beyond_loopback_without_a_token_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for host, token, warned in (("0.0.0.0", None, True), ("0.0.0.0", TOKEN, False), ("127.0.0.1", None, False)):
        caplog.clear()
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as group:
            task = group.create_task(serve_api(lambda: _status(), host, 0, bound, token=token))
            port = await bound
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as resp:
                assert resp.status == 200
            task.cancel()
        hits = [r for r in caplog.records if "without api.token" in r.getMessage()]
        assert bool(hits) is warned, (host, token, caplog.text)


def test_the_token_comes_from_the_environment_and_a_weak_one_is_refused(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site.yaml", [], journal=tmp_path / "j.db", api_port=8780)
    data = yaml.safe_load(site.read_text())
    data["api"]["token"] = "${PEDF_API_TOKEN_T}"
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_site(site, environ={"PEDF_API_TOKEN_T": TOKEN})
    assert loaded.config.api.token is not None and loaded.config.api.token.get_secret_value() == TOKEN
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={"PEDF_API_TOKEN_T": "short"})
    assert "api.token" in str(info.value) and "16 characters" in str(info.value) and "short" not in str(info.value)


@pytest.mark.services
def test_pedf_status_and_post_reload_with_the_token_of_a_running_gateway(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEDF_TEST_API_TOKEN", TOKEN)
    monkeypatch.delenv("PEDF_API_TOKEN", raising=False)
    devices = [{"name": "m1", "profile": "dtsu666", "port": free_port(), "role": "grid_meter", "interval_s": 1.0}]
    api_port = free_port()
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port)
    data = yaml.safe_load(site.read_text())
    data["api"]["token"] = "${PEDF_TEST_API_TOKEN}"
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    base = f"http://127.0.0.1:{api_port}"

    def get(path: str, token: str | None = None, method: str = "GET") -> tuple[int, dict]:
        req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    with SimulatorProcess(tmp_path, devices, speed=0), GatewayProcess(tmp_path, site, api_port) as gw:
        assert get("/status")[0] == 401 and get("/metrics")[0] == 401 and get("/reload", method="POST")[0] == 401
        wait_until(lambda: get("/health")[0] == 200, 20, what="healthy without a token")
        assert get("/status", TOKEN)[0] == 200

        env = {k: v for k, v in os.environ.items() if k != "PEDF_TEST_API_TOKEN"}
        refused = subprocess.run([_pedf(), "status", "--url", base], capture_output=True, text=True, timeout=30,
                                 env=env)
        assert refused.returncode == 1 and "requires its API token" in refused.stderr
        from_site = subprocess.run([_pedf(), "status", str(site)], capture_output=True, text=True, timeout=30)
        assert from_site.returncode == 0, from_site.stderr
        assert "1/1 devices up" in from_site.stdout and TOKEN not in from_site.stdout
        from_env = subprocess.run([_pedf(), "status", "--json", "--url", base], capture_output=True, text=True,
                                  timeout=30, env={**env, "PEDF_API_TOKEN": TOKEN})
        assert from_env.returncode == 0 and json.loads(from_env.stdout)["devices_total"] == 1

        data["devices"][0]["interval_s"] = 0.25
        site.write_text(yaml.safe_dump(data, sort_keys=False))
        code, body = get("/reload", TOKEN, method="POST")
        assert (code, body["reloaded"]) == (200, True)
        assert get("/status", TOKEN)[1]["devices"]["m1"]["interval_s"] == 0.25
        site.write_text(site.read_text().replace("interval_s: 0.25", "interval_s: soon"))
        code, body = get("/reload", TOKEN, method="POST")
        assert code == 200 and body["reloaded"] is False and "refused" in body["error"]
        time.sleep(0.5)
        assert get("/status", TOKEN)[1]["devices"]["m1"]["interval_s"] == 0.25  # the running configuration stays
        assert gw.terminate() == 0
    assert TOKEN not in (tmp_path / "gateway.log").read_text()
