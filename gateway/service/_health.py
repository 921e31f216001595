"""Is the gateway doing its job?  ``/health`` answers from :func:`health_reasons`, a pure function
of the status document: no reason means healthy (200), any reason means unhealthy (503), and the
reasons are the body a watchdog or an operator reads.

Unhealthy when readings are being lost or held back, not only when every device is down:

- the journal cannot commit: a commit failed within ``commit_failure_window_s``;
- the journal's file system has less free space than the reserve (``JournalStats.low_space``);
- a sink's oldest unsent sample is older than ``max_unsent_age_s`` (a database or broker outage,
  or a sink that cannot keep up);
- the site has devices and none is up (past the start: while no device has been polled yet, for at
  most ``START_GRACE_S``, a gateway that has just started is not unhealthy for that).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.service._status import GatewayStatus

START_GRACE_S = 60.0  # how long "no device polled yet" counts as starting, not as down


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    max_unsent_age_s: float = 300.0
    commit_failure_window_s: float = 60.0


def health_reasons(st: GatewayStatus, now_ns: int, policy: HealthPolicy = HealthPolicy()) -> list[str]:
    """Why the gateway is unhealthy at ``now_ns``; an empty list when it is healthy."""
    reasons: list[str] = []
    failed = st.last_commit_failure_ns
    if failed is not None and (now_ns - failed) / 1e9 <= policy.commit_failure_window_s:
        reasons.append(f"journal: a commit failed {max(0.0, (now_ns - failed) / 1e9):.0f} s ago "
                       f"({st.commit_failures} failed since start): readings are not being stored")
    j = st.journal
    if j.low_space:
        free = "" if j.free_bytes is None else f" ({j.free_bytes / 1e6:.1f} MB free)"
        reasons.append(f"journal: free disk space is under the reserve{free}")
    sinks = {name: s.last_error for name, s in st.sinks.items()}
    if st.mqtt.publish is not None:
        sinks["mqtt_publish"] = st.mqtt.publish.last_error or None
    for name, last_error in sorted(sinks.items()):
        backlog = j.sinks.get(name)
        if backlog is None or backlog.oldest_unsent_ns is None:
            continue
        age_s = (now_ns - backlog.oldest_unsent_ns) / 1e9
        if age_s > policy.max_unsent_age_s:
            why = f"; last error: {last_error}" if last_error else ""
            reasons.append(f"sink {name}: oldest unsent sample is {age_s:.0f} s old "
                           f"(limit {policy.max_unsent_age_s:g} s), {backlog.backlog_rows} rows waiting{why}")
    starting = st.uptime_s < START_GRACE_S and all(d.polls_ok + d.polls_failed == 0 for d in st.devices.values())
    if st.devices_total > 0 and st.devices_up == 0 and not starting:
        reasons.append(f"devices: none of {st.devices_total} is up")
    return reasons
