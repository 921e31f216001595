"""Live analytics: for every closed interval, the building KPIs appended to the journal as samples.

``pedf run`` with an ``analytics:`` section runs :class:`LiveAnalytics` beside the pollers. At each
interval end (aligned to the wall clock in UTC, default 15 min; DOMAIN.md §7 "Intervals") plus a
short delay for the readings that close it to be committed, it reads the interval's samples from
the journal, computes per building (same code as ``pedf analyze``, :mod:`gateway.analysis._kpis`):

- ``energy_kpi`` at the interval start: the energy balance (grid_import_kwh, pv_kwh, …,
  self_consumption_ratio, self_sufficiency_ratio, peak_import_kw, complete_intervals);
- ``emissions`` at the interval start: scope2_location_kg, scope2_market_kg,
  certificates_covered_kwh, exported_pv_avoided_kg and the factors used [kg/kWh], with the factor
  labels as tags — certificates of a month are used up in time order (monthly matching, no
  carry-over), the month's use so far read back from the journal at start;
- ``flexibility`` at the interval end: soc_pct and p_up/p_down/e_up/e_down per horizon of the
  batteries with specs in the section.

All with tags ``site``, ``building`` and ``period`` (ISO 8601 duration of the interval). The samples
go through the journal, so every sink delivers them like readings (at-least-once, replay-safe).
An interval whose readings are incomplete gets ``complete_intervals=0`` and no energy fields,
never zeros.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from analytics.localtime import local_date, local_day_start_ns, local_month
from gateway.analysis._channels import battery_soc, building_channels
from gateway.analysis._kpis import (
    CertificatePool,
    balance_fields,
    emission_fields,
    envelope_fields,
    factor_choice,
    period_label,
    series_key,
)
from gateway.analysis._loaders import load_journal
from gateway.config import AnalyticsSection, Site
from gateway.journal import Journal
from gateway.series import Sample

log = logging.getLogger("pedf.analytics")


class LiveAnalytics:
    """``await LiveAnalytics(site, journal).run(stop)``: KPIs of every closed interval into the journal."""

    def __init__(self, site: Site, journal: Journal, *, section: AnalyticsSection | None = None,
                 delay_s: float | None = None) -> None:
        section = section or site.config.analytics
        if section is None:
            raise ValueError("live analytics need an analytics: section in the site file")
        self.site, self.journal, self.section = site, journal, section
        self.tz = site.config.site.timezone
        self.interval_ns = section.interval_ns
        self.factors = factor_choice(site, section)
        self.pools = {b.name: CertificatePool(self.factors, b.name) for b in site.config.buildings}
        longest_poll = max((d.section.interval_s for d in site.devices), default=1.0)
        # the readings that close an interval arrive within one poll, then wait for the group commit
        self.delay_ns = int((delay_s if delay_s is not None else 2 * longest_poll + 1.0) * 1e9)
        self.period = period_label(self.interval_ns)
        self.intervals_done = 0
        self.errors = 0
        self._sids: dict[object, int] = {}

    async def _append(self, measurement: str, tags: dict[str, str], ts_ns: int, fields: dict[str, float]) -> int:
        names = sorted(fields)
        key = series_key(measurement, tags, names)
        sid = self._sids.get(key)
        if sid is None:
            sid = self._sids[key] = await self.journal.series_id(key)
        return await self.journal.append(Sample(sid, ts_ns, np.array([fields[f] for f in names])))

    def _emission_tags(self, building: str) -> dict[str, str]:
        return {"site": self.site.name, "building": building, "period": self.period} | self.factors.tags(building)

    async def restore_certificate_use(self, now_ns: int) -> None:
        """Certificates already used this month, from this component's own samples in the journal."""
        month_start = local_day_start_ns(local_date(now_ns, self.tz).replace(day=1), self.tz)
        for arrays in await self.journal.query(None, month_start, now_ns):
            key = self.journal.series(arrays.series_id)
            tags = dict(key.tags)
            if (key.measurement != "emissions" or tags.get("site") != self.site.name
                    or tags.get("period") != self.period or "certificates_covered_kwh" not in key.fields
                    or tags.get("building") not in self.pools
                    or tags != self._emission_tags(tags["building"])):
                continue
            used = np.nansum(arrays.values[:, key.fields.index("certificates_covered_kwh")])
            self.pools[tags["building"]].use(local_month(now_ns, self.tz), float(used))

    async def compute(self, start_ns: int, end_ns: int) -> int:
        """KPIs of the interval [start_ns, end_ns) appended to the journal; returns samples appended."""
        readings = await load_journal(self.journal, self.site, start_ns - self.interval_ns, end_ns + self.interval_ns)
        section, seqs = self.section, []
        for b in self.site.config.buildings:
            ch = building_channels(readings, b.name, start_ns, 1, self.interval_ns, p_max_kw=section.p_max_kw)
            one = slice(0, 1)
            kpi = balance_fields(ch, one, b.floor_area_m2, section.self_sufficiency)
            em = emission_fields(ch, one, self.factors, self.pools[b.name], self.tz)
            tags = {"site": self.site.name, "building": b.name, "period": self.period}
            seqs.append(await self._append("energy_kpi", tags, start_ns, kpi))
            seqs.append(await self._append("emissions", self._emission_tags(b.name), start_ns, em))
            specs = {d.name: section.batteries[d.name] for d in self.site.devices
                     if d.building == b.name and d.name in section.batteries}
            if specs:
                point = np.array([end_ns], dtype=np.int64)
                soc = {name: battery_soc(readings, name, point, self.interval_ns) for name in specs}
                env = {k: float(v[0]) for k, v in envelope_fields(soc, specs, section.horizons_h).items()}
                if not np.isnan(env["soc_pct"]):
                    seqs.append(await self._append("flexibility", tags, end_ns, env))
        return len(seqs)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Compute each interval once it has closed, until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        now = time.time_ns()
        await self.restore_certificate_use(now)
        next_end = (now // self.interval_ns + 1) * self.interval_ns
        while not stop.is_set():
            wait_s = (next_end + self.delay_ns - time.time_ns()) / 1e9
            if wait_s > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait_s)
                    return
                except TimeoutError:
                    pass
            start = next_end - self.interval_ns
            try:
                n = await self.compute(start, next_end)
                self.intervals_done += 1
                log.debug("interval KPIs appended", extra={"fields": {"start_ns": start, "samples": n}})
            except Exception as exc:  # backstop: one interval that cannot be computed is logged and counted;
                self.errors += 1  # the next one is computed, and polling never notices
                log.error("live analytics of an interval failed", exc_info=True,
                          extra={"fields": {"start_ns": start, "error": f"{type(exc).__name__}: {exc}"}})
            # after a long pause (suspend, overload) continue with the latest closed interval
            latest = (time.time_ns() - self.delay_ns) // self.interval_ns * self.interval_ns
            next_end = max(next_end + self.interval_ns, latest)
