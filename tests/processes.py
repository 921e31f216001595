"""The one wrapper for every process the tests and benchmarks start, and the one ``free_port``.

A :class:`Process` starts its command with stdout and stderr in log files of its working folder,
waits for it to be ready (a probe, or a word on its stdout) until a deadline, stops it with SIGTERM
and then SIGKILL, restarts it, and puts the tail of its output into every error.  Subclasses give the
command line (and the probe): the real servers in ``tests/servers.py`` (influxd, victoria-metrics,
mosquitto, the pymodbus test server), the simulator and ``pedf run`` in ``tests/harness.py``.

A binary that is not installed is an error naming its Debian package, never a skip (DESIGN.md, "Real
services in tests").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

# binary → the Debian package that installs it (``make debs`` installs the servers)
DEBIAN_PACKAGES = {
    "influxd": "influxdb",
    "victoria-metrics": "victoria-metrics",
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto",
    "mbpoll": "mbpoll",
    "socat": "socat",
    "openssl": "openssl",
}

_next_port = [10000 + (os.getpid() * 7919) % 15000]


def free_port() -> int:
    """A bindable loopback port below the ephemeral range, so that no client socket of an earlier
    run (lingering in TIME_WAIT) can hold it when a server binds it.  Successive calls give distinct
    ports (a counter walks 10000–29999 from a point that depends on the process id)."""
    for _ in range(20000):
        port = _next_port[0]
        _next_port[0] = 10000 + (port - 10000 + 1) % 20000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every port of the range taken: let the kernel choose one
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MissingBinary(RuntimeError):
    """A server binary is not installed: the tests that need it fail (they are never skipped)."""


def find_binary(name: str) -> str:
    """The path of ``name`` on PATH, or in /usr/sbin or /usr/bin; else :class:`MissingBinary`."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        raise MissingBinary(
            f"{name} not found on PATH: install the Debian package {package!r} (`make debs`, or "
            f"`apt-get install {package}`; see DESIGN.md, 'Real services in tests'); tests that need it "
            f"cannot run without it"
        )
    return path


class ProcessFailed(RuntimeError):
    """The process exited while it was being started."""


class ProcessTimeout(ProcessFailed, TimeoutError):
    """The process was not ready by the deadline (it has been killed)."""


class Process:
    """A child process with a readiness check; subclasses give :meth:`command` and, unless they set
    ``ready_word`` (a word the process prints on stdout once it serves), :meth:`ready`.

    Output goes to ``<workdir>/<name>.log`` (stderr, and stdout too with ``merge_output``) and
    ``<workdir>/<name>.out`` (stdout), appended across restarts.  ``start()`` again after ``stop()``
    or ``kill()`` restarts the same command (same ports, same data folder).
    """

    name = "process"
    start_timeout_s = 20.0
    stop_timeout_s = 15.0
    ready_word: str | None = None
    merge_output = False
    exit_signal: int = signal.SIGTERM  # what leaving the ``with`` block sends
    poll_interval_s = 0.02

    def __init__(self, workdir: Path, *, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.out_path = self.log_path if self.merge_output else self.workdir / f"{self.name}.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self._offsets = (0, 0)

    # -- what subclasses give
    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def cwd(self) -> Path:
        return self.workdir

    def env(self) -> Mapping[str, str] | None:
        return None

    def ready(self) -> bool:
        """True once the process serves; may raise OSError while it does not yet."""
        if self.ready_word is None:
            return True
        return self.ready_word.encode() in self._read(self.out_path, self._offsets[1])

    # -- life cycle
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")  # type: ignore[union-attr]
        cmd = list(self.command())  # a missing binary raises here, before anything runs
        self._offsets = (_size(self.log_path), _size(self.out_path))
        with open(self.log_path, "ab") as log:
            if self.merge_output:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd(),
                                             env=self.env())
            else:
                with open(self.out_path, "ab") as out:
                    self.proc = subprocess.Popen(cmd, stdout=out, stderr=log, cwd=self.cwd(), env=self.env())
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with {self.proc.returncode}{self._tail_note()}")
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            time.sleep(self.poll_interval_s)
        self.kill()
        raise ProcessTimeout(f"{self.name} not ready within {self.start_timeout_s} s{self._tail_note()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Send ``sig`` and wait (``stop_timeout_s``), then SIGKILL; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(self.stop_timeout_s if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the exit code, without escalating (``subprocess.TimeoutExpired``)."""
        assert self.proc is not None, f"{self.name} was never started"
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(self.exit_signal)

    # -- output
    def output(self) -> str:
        """What the process printed on stdout since it was last started."""
        return self._read(self.out_path, self._offsets[1]).decode(errors="replace")

    def log_tail(self, n: int = 2000) -> str:
        """The last ``n`` characters of its log (and of its stdout) since it was last started."""
        text = self._read(self.log_path, self._offsets[0]).decode(errors="replace")[-n:]
        if not self.merge_output:
            out = self.output()[-n:]
            if out:
                text = f"{text}\n[stdout]\n{out}" if text else out
        return text or "<no output>"

    def _tail_note(self) -> str:
        return f" (log {self.log_path}):\n{self.log_tail()}"

    @staticmethod
    def _read(path: Path, offset: int) -> bytes:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read()
        except OSError:
            return b""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["DEBIAN_PACKAGES", "MissingBinary", "Process", "ProcessFailed", "ProcessTimeout", "find_binary",
           "free_port"]
