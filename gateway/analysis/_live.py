"""Live KPIs of one closed interval, computed where they cannot stall the polling.

``pedf run`` with an ``analytics:`` section computes, for every closed interval (aligned to the wall
clock in UTC, default 15 min; DOMAIN.md §7 "Intervals"), per building — with the same code as
``pedf analyze`` (:mod:`gateway.analysis._kpis`):

- ``energy_kpi`` at the interval start: the energy balance (grid_import_kwh, pv_kwh, …,
  self_consumption_ratio, self_sufficiency_ratio, peak_import_kw, complete_intervals);
- ``emissions`` at the interval start: scope2_location_kg, scope2_market_kg,
  certificates_covered_kwh, exported_pv_avoided_kg and the factors used [kg/kWh], with the factor
  labels as tags — certificates of a month are used up in time order (monthly matching, no
  carry-over), the month's use so far read back from the journal at start;
- ``flexibility`` at the interval end: soc_pct and p_up/p_down/e_up/e_down per horizon of the
  batteries with specs in the section.

All with tags ``site``, ``building`` and ``period`` (ISO 8601 duration of the interval).  An interval
whose readings are incomplete gets ``complete_intervals=0`` and no energy fields, never zeros.

:class:`IntervalKpis` runs in the analytics worker process (:mod:`gateway.analysis._worker`): it
reads the interval's rows through its own read-only connection and the journal's time index
(:class:`gateway.journal.JournalReader`), only the fields the balance needs, and returns the
records; the gateway appends them to the journal, so every sink delivers them like readings.
"""

from __future__ import annotations

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
)
from gateway.analysis._loaders import load_reader
from gateway.analysis._results import Record
from gateway.config import AnalyticsSection, Site
from gateway.journal import JournalReader


class IntervalKpis:
    """KPIs of closed intervals from a journal, keeping the month's certificate use between them."""

    def __init__(self, site: Site, reader: JournalReader, section: AnalyticsSection | None = None) -> None:
        section = section or site.config.analytics
        if section is None:
            raise ValueError("live analytics need an analytics: section in the site file")
        self.site, self.reader, self.section = site, reader, section
        self.tz = site.config.site.timezone
        self.interval_ns = section.interval_ns
        self.factors = factor_choice(site, section)
        self.pools = {b.name: CertificatePool(self.factors, b.name) for b in site.config.buildings}
        self.period = period_label(self.interval_ns)

    def _emission_tags(self, building: str) -> dict[str, str]:
        return {"site": self.site.name, "building": building, "period": self.period} | self.factors.tags(building)

    def restore_certificate_use(self, now_ns: int) -> None:
        """Certificates already used this month, from this component's own samples in the journal."""
        month_start = local_day_start_ns(local_date(now_ns, self.tz).replace(day=1), self.tz)
        self.reader.refresh()
        for sid, key in list(self.reader.series.items()):
            tags = dict(key.tags)
            if (key.measurement != "emissions" or tags.get("site") != self.site.name
                    or tags.get("period") != self.period or "certificates_covered_kwh" not in key.fields
                    or tags.get("building") not in self.pools
                    or tags != self._emission_tags(tags["building"])):
                continue
            _, cols = self.reader.columns(sid, ("certificates_covered_kwh",), month_start, now_ns)
            used = float(np.nansum(cols["certificates_covered_kwh"]))
            self.pools[tags["building"]].use(local_month(now_ns, self.tz), used)

    def compute(self, start_ns: int, end_ns: int) -> list[Record]:
        """The records of the interval [start_ns, end_ns)."""
        readings = load_reader(self.reader, self.site, start_ns - self.interval_ns, end_ns + self.interval_ns)
        section, out = self.section, []
        for b in self.site.config.buildings:
            ch = building_channels(readings, b.name, start_ns, 1, self.interval_ns, p_max_kw=section.p_max_kw)
            one = slice(0, 1)
            tags = {"site": self.site.name, "building": b.name, "period": self.period}
            out.append(Record("energy_kpi", tags, start_ns, balance_fields(ch, one, b.floor_area_m2,
                                                                           section.self_sufficiency)))
            out.append(Record("emissions", self._emission_tags(b.name), start_ns,
                              emission_fields(ch, one, self.factors, self.pools[b.name], self.tz)))
            specs = {d.name: section.batteries[d.name] for d in self.site.devices
                     if d.building == b.name and d.name in section.batteries}
            if specs:
                point = np.array([end_ns], dtype=np.int64)
                soc = {name: battery_soc(readings, name, point, self.interval_ns) for name in specs}
                env = {k: float(v[0]) for k, v in envelope_fields(soc, specs, section.horizons_h).items()}
                if not np.isnan(env["soc_pct"]):
                    out.append(Record("flexibility", tags, end_ns, env))
        return out
