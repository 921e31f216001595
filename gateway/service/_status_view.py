"""Plain-text rendering of the gateway's ``/status`` document for ``pedf status``."""

from __future__ import annotations

import time


def _age(ts_ns: int | None) -> str:
    if not ts_ns:
        return "-"
    seconds = max(0.0, time.time() - ts_ns / 1e9)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def render_status(st: dict) -> str:
    lines = [
        f"site {st['site']}: {st['devices_up']}/{st['devices_total']} devices up, "
        f"{st['samples_per_s']} samples/s, {st['samples']} samples, {st['overruns']} overruns, "
        f"up {st['uptime_s']:.0f} s"
    ]
    for name, dev in sorted(st["devices"].items()):
        state = "up  " if dev.get("up") else "DOWN"
        errors = {
            k: v for k, v in dev.items() if k in ("timeouts", "exceptions", "malformed", "reconnects", "overruns") and v
        }
        lines.append(
            f"  {state} {name:<22} ok {dev.get('polls_ok', 0):<8} last ok {_age(dev.get('last_ok_ns'))}  {errors or ''}"
        )
    journal = st.get("journal", {})
    lines.append(
        f"journal: {journal.get('rows', '?')} rows, {journal.get('bytes', 0) / 1e6:.1f} MB, "
        f"dropped {journal.get('dropped_rows', 0)}"
    )
    for name, sink in sorted(st.get("sinks", {}).items()):
        backlog = journal.get("sinks", {}).get(name, {})
        lines.append(
            f"  sink {name}: backlog {backlog.get('backlog_rows', sink.get('backlog', '?'))} rows, "
            f"oldest unsent {_age(backlog.get('oldest_unsent_ns'))}, sent {sink.get('sent_lines', '?')} lines, "
            f"dead-lettered {sink.get('dead_lettered', 0)}, last error {sink.get('last_error') or '-'}"
        )
    for name, mqtt in sorted(st.get("mqtt", {}).items()):
        connection = mqtt.get("connection") or {}
        lines.append(
            f"  mqtt {name}: received {mqtt.get('received', 0)}, committed {mqtt.get('committed', 0)}, "
            f"acked {mqtt.get('acked', 0)}, dead-lettered {mqtt.get('dead_lettered', 0)}, "
            f"outstanding {mqtt.get('outstanding', 0)}, connected {connection.get('connected', '?')}"
        )
    return "\n".join(lines)
