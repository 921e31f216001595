"""Random mutations of the example site files through ``pedf check``: no traceback, no hang.

A seeded generator (``PEDF_FUZZ_SEED``, ``PEDF_FUZZ_CASES``) mutates examples/*.yaml: keys deleted
and renamed, values of the wrong type, huge, tiny, NaN and infinite numbers, unicode, duplicated
list items; and the text: random characters and bytes, truncation, tags, anchors and aliases,
deep nesting. Every case goes through ``pedf check``'s own code (``gateway.cli.main``) in-process
under a time limit and must end with exit status 0 or 2; a few go through the real ``pedf check``
process, and a sample of the accepted ones is started with ``pedf run`` (devices, sinks and
brokers moved to loopback ports nothing listens on) and must run, then stop cleanly.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent
PEDF = Path(sys.executable).with_name("pedf")
SEEDS = sorted((ROOT / "examples").glob("*.yaml"))
CASES = int(os.environ.get("PEDF_FUZZ_CASES", "3000"))
SEED = int(os.environ.get("PEDF_FUZZ_SEED", "20261202"))
CASE_LIMIT_S = 10.0  # one case; the slowest real one takes ~0.1 s
RUN_SAMPLE = 4
SUBPROCESS_CHECKS = 4

WEIRD_NUMBERS = [0, -1, 1e-320, 1e-10, 1e308, -1e308, 2**64, -(2**63), 10**30, math.nan, math.inf, -math.inf,
                 0.5, 65536, 70000, 125, 126, True, False]
WEIRD_TEXT = ["", " ", "\u00e9t\u00e9", "\u5927\u697c", "\U0001f525" * 3, "\u202eevil", "a" * 300, "${UNSET_FUZZ_VAR}",
              "${X:-}", "../../etc/passwd", "/dev/null", ".", "http://", "ftp://x", "http://u:p@h:99999", "::1",
              "e\u0301", "\ufeff", "NaN", "null", "0x10", "1e999"]
TEXT_SNIPPETS = [":", "- ", "[", "]", "{", "}", "&a ", "*a", "*nope", "!custom ", "!!int ", "!!timestamp ",
                 "!!binary ", "!!python/object:os.system ", "!!set ", "? ", "|\n", ">\n", "\t", "\"", "'", "#",
                 "%YAML 1.1\n", "---\n", "...\n", "<<: *a\n", "\\", "\x00", "\x07", "\x1b", "\u2028", "\ud7ff"]
BAD_BYTES = [b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff\xfe", b"\xef\xbb\xbf"]


@dataclass
class Case:
    number: int
    kinds: list[str]
    data: bytes


class Mutator:
    """Makes cases from the seed files; the same seed gives the same cases."""

    def __init__(self, rng: random.Random, seeds: list[Path]) -> None:
        self.rng = rng
        self.seeds = [(p.read_text(encoding="utf-8"), yaml.safe_load(p.read_text(encoding="utf-8"))) for p in seeds]

    def case(self, number: int) -> Case:
        text, data = self.rng.choice(self.seeds)
        kinds: list[str] = []
        tree = _copy(data)
        for _ in range(self.rng.choice((0, 1, 1, 1, 2, 3))):
            kinds.append(self._tree(tree))
        style = self.rng.choice((False, None, True))
        out = text if not kinds and self.rng.random() < 0.5 else _dump(tree, style)
        raw = out.encode("utf-8")
        if not kinds or self.rng.random() < 0.4:
            raw, kind = self._text(raw)
            kinds.append(kind)
        return Case(number, kinds, raw)

    # -- on the data tree
    def _slots(self, node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        if isinstance(node, dict):
            for k in list(node):
                out.append((node, k))
                self._slots(node[k], out)
        elif isinstance(node, list):
            for i in range(len(node)):
                out.append((node, i))
                self._slots(node[i], out)
        return out

    def _tree(self, tree: Any) -> str:
        slots = self._slots(tree, [])
        if not slots:
            return "none"
        r = self.rng
        numbers = [(p, k) for p, k in slots if isinstance(p[k], int | float) and not isinstance(p[k], bool)]
        if numbers and r.random() < 0.4:  # numbers are where limits hide: aim at them more often
            parent, key = r.choice(numbers)
            kind = r.choice(("number", "number", "tweak", "small", "type"))
        else:
            parent, key = r.choice(slots)
            kind = r.choice(("delete", "rename", "type", "number", "number", "text", "duplicate", "swap", "nest",
                             "tweak", "tweak", "tweak"))
        if kind == "delete":
            del parent[key]
        elif kind == "rename" and isinstance(parent, dict):
            new = r.choice((_typo(r, str(key)), r.choice(WEIRD_TEXT), str(key).upper(), str(key) + "_"))
            parent[new] = parent.pop(key)
        elif kind == "type":
            parent[key] = r.choice(([], {}, [1, 2], {"a": 1}, "text", 7, 3.5, True, None, [[[]]]))
        elif kind == "number":
            parent[key] = r.choice(WEIRD_NUMBERS)
        elif kind == "small":
            parent[key] = r.choice((1, 2, 3, 4, 8, 0.01, 0.1))
        elif kind == "text":
            parent[key] = r.choice(WEIRD_TEXT)
        elif kind == "duplicate" and isinstance(parent, list):
            parent.append(_copy(parent[key]))
        elif kind == "swap":
            other_parent, other_key = r.choice(slots)
            with contextlib.suppress(KeyError, IndexError):
                parent[key] = _copy(other_parent[other_key])
        elif kind == "tweak" and isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
            value = parent[key]  # a plausible change: most of these stay valid
            parent[key] = value + r.choice((-1, 1)) if isinstance(value, int) else value * r.uniform(0.5, 2)
        elif kind == "nest":
            parent[key] = {"x": parent[key]} if r.random() < 0.5 else [parent[key]]
        else:
            parent[key] = None
        return kind

    # -- on the text
    def _text(self, raw: bytes) -> tuple[bytes, str]:
        r = self.rng
        at = r.randrange(len(raw) + 1)
        kinds = ("insert", "bytes", "truncate", "tag", "alias", "laughs", "deep", "line")
        kind = r.choices(kinds, weights=(3, 1, 1, 2, 2, 0.3, 1, 1))[0]  # an alias bomb costs ~0.15 s
        if kind == "insert":
            snippet = "".join(r.choice(TEXT_SNIPPETS) for _ in range(r.randint(1, 3)))
            return raw[:at] + snippet.encode("utf-8", "surrogatepass") + raw[at:], kind
        if kind == "bytes":
            return raw[:at] + r.choice(BAD_BYTES) + raw[at:], kind
        if kind == "truncate":
            return raw[:at], kind
        lines = raw.split(b"\n")
        i = r.randrange(len(lines))
        line = lines[i]
        if kind == "tag" and b": " in line:
            k, _, v = line.partition(b": ")
            tag = r.choice((b"!custom ", b"!!int ", b"!!float ", b"!!timestamp ", b"!!bool ", b"!!str ", b"!!map ",
                            b"!!python/name:os.system ", b"!!binary "))
            lines[i] = k + b": " + tag + v
        elif kind == "alias" and b": " in line:
            k, _, v = line.partition(b": ")
            lines[i] = k + b": " + r.choice((b"&a ", b"*a", b"&a [*a]", b"{<<: *a}", b"&b " + v, b"*b"))
        elif kind == "laughs":
            lines.append(b"x_lol: &l0 [a, a, a, a, a, a, a, a, a, a]")
            lines += [f"x_lol{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]".encode() for n in range(1, 8)]
        elif kind == "deep":
            depth = r.choice((30, 45, 200, 5000))
            lines.insert(i, b"x_deep: " + b"[" * depth + b"]" * depth)
        else:
            lines.insert(i, line)  # a duplicated line: a duplicate key or list item
        return b"\n".join(lines), kind


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(tree: Any, flow: bool | None) -> str:
    return yaml.dump(tree, Dumper=DUMPER, allow_unicode=True, sort_keys=False, default_flow_style=flow, width=100)


def _typo(rng: random.Random, key: str) -> str:
    if len(key) < 2:
        return key + "x"
    i = rng.randrange(len(key) - 1)
    return rng.choice((key[:i] + key[i + 1:], key[:i] + key[i + 1] + key[i] + key[i + 2:], key.replace("_", "-")))


class CaseTimeout(BaseException):
    """A case ran past its time limit (BaseException: nothing under test may swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_in_process(path: Path) -> tuple[int, str]:
    """``pedf check path`` in this process: (exit status, output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), time_limit(CASE_LIMIT_S):
        status = main(["--log-level", "ERROR", "check", str(path)])
    return status, out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_site(text: bytes, workdir: Path, n: int) -> str:
    """An accepted site with every device, sink and broker moved to a loopback port nobody serves."""
    site = yaml.safe_load(text.decode("utf-8"))
    for template in (site.get("templates") or {}).values():
        if isinstance(template, dict) and "connection" in template:
            template["connection"] = {"type": "tcp", "host": "127.0.0.1", "port": free_port()}
    for device in site.get("devices") or []:
        conn = device.get("connection") if isinstance(device.get("connection"), dict) else {}
        kind = conn.get("type") if conn.get("type") in ("tcp", "rtu_over_tcp") else "tcp"
        device["connection"] = {"type": kind, "host": "127.0.0.1", "port": free_port()}
    for sink in site.get("sinks") or []:
        sink["url"] = f"http://127.0.0.1:{free_port()}"
    mqtt = site.get("mqtt")
    if isinstance(mqtt, dict):
        mqtt["brokers"] = [{"host": "127.0.0.1", "port": free_port()}]
        if isinstance(mqtt.get("publish"), dict) and "broker" in mqtt["publish"]:
            mqtt["publish"]["broker"] = {"host": "127.0.0.1", "port": free_port()}
    site["journal"] = {**(site.get("journal") or {}), "path": str(workdir / f"journal{n}.db")}
    site["api"] = {**(site.get("api") or {}), "host": "127.0.0.1", "port": 0}
    return yaml.safe_dump(site, allow_unicode=True, sort_keys=False)


def test_fuzzed_site_files_never_crash_pedf_check(tmp_path: Path) -> None:
    assert len(SEEDS) >= 2, SEEDS
    for seed in SEEDS:  # the unmutated examples are valid
        status, out = check_in_process(seed)
        assert status == 0, out
    rng = random.Random(SEED)
    mutator = Mutator(rng, SEEDS)
    failures: list[str] = []
    accepted: list[Case] = []
    refused: list[Case] = []
    kinds: dict[str, int] = {}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    started = time.monotonic()
    try:
        for n in range(CASES):
            case = mutator.case(n)
            for k in case.kinds:
                kinds[k] = kinds.get(k, 0) + 1
            path = tmp_path / "cases" / f"case{n}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(case.data)
            try:
                status, out = check_in_process(path)
            except BaseException:  # every escape, a timeout included, is the finding
                failures.append(f"case {n} {case.kinds} ({path}):\n{traceback.format_exc(limit=-6)}")
                if len(failures) >= 5:
                    break
                continue
            if status not in (0, 2) or "Traceback" in out:
                failures.append(f"case {n} {case.kinds} ({path}): status {status}\n{out[-1500:]}")
                continue
            path.unlink()
            (accepted if status == 0 else refused).append(case)
    finally:
        root.handlers[:], root.level = handlers, level
    elapsed = time.monotonic() - started
    print(f"fuzz: {CASES} cases (seed {SEED}) in {elapsed:.1f} s: {len(accepted)} accepted, "
          f"{len(refused)} refused, {len(failures)} failures; mutations {dict(sorted(kinds.items()))}")
    assert not failures, "\n\n".join(failures)
    assert len(refused) > CASES // 4 and len(accepted) > CASES // 50  # the mutations reach both outcomes
    test_fuzzed_site_files_never_crash_pedf_check.accepted = accepted  # type: ignore[attr-defined]
    test_fuzzed_site_files_never_crash_pedf_check.refused = refused  # type: ignore[attr-defined]


def _sample(tmp_path: Path) -> tuple[list[Case], list[Case]]:
    """The fuzz run's cases, or (run on its own) a fresh, smaller batch."""
    fuzz = test_fuzzed_site_files_never_crash_pedf_check
    if hasattr(fuzz, "accepted"):
        return fuzz.accepted, fuzz.refused  # type: ignore[attr-defined]
    mutator = Mutator(random.Random(SEED), SEEDS)
    accepted, refused = [], []
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for n in range(300):
            case = mutator.case(n)
            path = tmp_path / f"s{n}.yaml"
            path.write_bytes(case.data)
            (accepted if check_in_process(path)[0] == 0 else refused).append(case)
    finally:
        root.handlers[:], root.level = handlers, level
    return accepted, refused


@pytest.mark.services
def test_real_pedf_check_on_fuzzed_files(tmp_path: Path) -> None:
    accepted, refused = _sample(tmp_path)
    rng = random.Random(SEED + 1)
    picked = rng.sample(refused, SUBPROCESS_CHECKS - 1) + rng.sample(accepted, 1)
    procs = []
    for case in picked:
        path = tmp_path / f"check{case.number}.yaml"
        path.write_bytes(case.data)
        procs.append((case, subprocess.Popen([str(PEDF), "check", str(path)], cwd=tmp_path, text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for case, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == (0 if case in accepted else 2), (case.kinds, out, err)
        assert "Traceback" not in err, err


@pytest.mark.services
def test_accepted_fuzzed_files_run_and_stop_cleanly(tmp_path: Path) -> None:
    accepted, _ = _sample(tmp_path)
    rng = random.Random(SEED + 2)
    mutated = [c for c in accepted if c.kinds and c.kinds != ["none"]]
    procs = []
    for case in rng.sample(mutated, min(RUN_SAMPLE, len(mutated))):
        path = tmp_path / f"run{case.number}.yaml"
        path.write_text(loopback_site(case.data, tmp_path, case.number))
        status, out = check_in_process(path)
        assert status == 0, out  # moving devices to loopback keeps an accepted site accepted
        log = (tmp_path / f"run{case.number}.log").open("w")
        proc = subprocess.Popen([str(PEDF), "run", str(path)], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=log)
        procs.append((case, path, proc, log))
    try:
        deadline = time.monotonic() + 60
        ready = 0
        for case, path, proc, _ in procs:
            line = ""
            assert proc.stdout is not None
            while "ready" not in line and proc.poll() is None:  # "ready" once the service runs
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no 'ready' within 60 s: {case.kinds} {path}"
                if select.select([proc.stdout], [], [], remaining)[0]:
                    line = proc.stdout.readline()
            ready += "ready" in line
            assert "ready" in line or proc.poll() == 2, (case.kinds, path.read_text()[:3000])
        print(f"pedf run: {ready} of {len(procs)} accepted fuzzed sites ran")
        assert ready >= 1
        time.sleep(3)
        for _, _, proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for case, _, proc, log in procs:
            status = proc.wait(timeout=60)
            log.close()
            err = Path(log.name).read_text()
            assert "Traceback" not in err, (case.kinds, err[-3000:])
            assert status in (0, 2), (case.kinds, status, err[-3000:])
    finally:
        for _, _, proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
