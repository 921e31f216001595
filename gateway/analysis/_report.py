"""Tables (CSV), PNG plots (matplotlib, Agg backend: no display on a site box) and a Markdown or HTML
report of an :class:`gateway.analysis.Analysis`.

The report states every choice its figures depend on: the factor set, region and data year of
each building, the residual factor, the certificate matching, the interval, the balance
conventions (DOMAIN.md §2, §3, §7), and the notes the computation raised.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

import numpy as np

from analytics.localtime import local_iso
from gateway.analysis._kpis import horizon_label
from gateway.analysis._results import Analysis, output_paths

DAILY_COLUMNS = ["building", "day", "pv_kwh", "grid_import_kwh", "grid_export_kwh", "charge_kwh", "discharge_kwh",
                 "load_ac_kwh", "load_dc_kwh", "load_kwh", "losses_kwh", "self_consumption_ratio",
                 "self_sufficiency_ratio", "peak_import_kw", "peak_load_kw", "complete_intervals", "coverage_ratio",
                 "scope2_location_kg", "scope2_market_kg", "certificates_covered_kwh", "exported_pv_avoided_kg"]
MONTHLY_COLUMNS = ["building", "month", "grid_import_kwh", "scope2_location_kg", "scope2_market_kg",
                   "certificates_covered_kwh", "exported_pv_avoided_kg", "missing_intervals", "location_factor",
                   "residual_factor", "matching"]


def _fmt(value: object, digits: int = 6) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in rows:
            w.writerow([_fmt(row.get(c, ""), 15) for c in columns])


def _iso(ts_ns: int, tz: str) -> str:
    return local_iso(ts_ns, tz)


def flex_summary(a: Analysis) -> list[dict]:
    rows = []
    for building, fields in a.flexibility.items():
        for h in a.horizons_h:
            label = horizon_label(h)
            up, down = fields[f"p_up_{label}_kw"], fields[f"p_down_{label}_kw"]
            ok = ~np.isnan(up)
            rows.append({"building": building, "horizon_h": h, "points": int(ok.sum()),
                         "p_up_mean_kw": float(np.mean(up[ok])) if ok.any() else np.nan,
                         "p_up_min_kw": float(np.min(up[ok])) if ok.any() else np.nan,
                         "p_down_mean_kw": float(np.mean(down[ok])) if ok.any() else np.nan,
                         "p_down_min_kw": float(np.min(down[ok])) if ok.any() else np.nan})
    return rows


def write_tables(a: Analysis, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out)
    extra = sorted({k for row in a.daily for k in row} - set(DAILY_COLUMNS) - {"start_ns"})
    _write_csv(paths["daily"], DAILY_COLUMNS + extra, a.daily)
    _write_csv(paths["monthly"], MONTHLY_COLUMNS, a.monthly_emissions)
    summary = flex_summary(a)
    _write_csv(paths["flex_summary"], ["building", "horizon_h", "points", "p_up_mean_kw", "p_up_min_kw",
                                       "p_down_mean_kw", "p_down_min_kw"], summary)
    flex_rows = []
    for building, fields in a.flexibility.items():
        for k, t in enumerate(a.flex_points_ns):
            flex_rows.append({"building": building, "time": _iso(int(t), a.tz)}
                             | {f: float(v[k]) for f, v in fields.items()})
    columns = ["building", "time", *sorted({f for fields in a.flexibility.values() for f in fields})]
    _write_csv(paths["flex"], columns, flex_rows)
    return paths


def plot(a: Analysis, out: Path) -> list[Path]:
    """Three PNGs: daily energy balance, emissions by method, the battery flexibility envelope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    buildings = list(a.channels)
    fig, axes = plt.subplots(len(buildings), 1, figsize=(9, 3.2 * len(buildings)), squeeze=False)
    for ax, building in zip(axes[:, 0], buildings, strict=True):
        rows = [r for r in a.daily if r["building"] == building]
        x = np.arange(len(rows))
        labels = [r["day"] for r in rows]
        supply = [("pv_kwh", "PV"), ("grid_import_kwh", "grid import"), ("discharge_kwh", "discharge")]
        demand = [("load_ac_kwh", "AC load"), ("load_dc_kwh", "DC load"), ("grid_export_kwh", "export"),
                  ("charge_kwh", "charge"), ("losses_kwh", "losses")]
        bottom = np.zeros(len(rows))
        for key, name in supply:
            v = np.nan_to_num([r[key] for r in rows])
            ax.bar(x - 0.2, v, 0.4, bottom=bottom, label=name)
            bottom += v
        bottom = np.zeros(len(rows))
        for key, name in demand:
            v = np.nan_to_num([r[key] for r in rows])
            ax.bar(x + 0.2, v, 0.4, bottom=bottom, label=name, hatch="//" if key == "losses_kwh" else None)
            bottom += v
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("kWh")
        ax.set_title(f"{building}: daily energy balance (left: supply, right: use)")
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    written.append(out / "energy_balance_daily.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.5))
    rows = a.daily
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["scope2_location_kg"] for r in rows], 0.4, label="location-based")
    ax.bar(x + 0.2, [r["scope2_market_kg"] for r in rows], 0.4, label="market-based")
    ax.set_xticks(x, [f"{r['building']}\n{r['day']}" for r in rows], fontsize=7)
    ax.set_ylabel("kg CO2")
    ax.set_title(f"Scope 2 by method (location: {', '.join(sorted({f.label for f in a.factors.location.values()}))};"
                 f" residual: {a.factors.residual.label})", fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    written.append(out / "emissions_by_method.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.8))
    if a.flexibility:
        hours = (a.flex_points_ns - a.flex_points_ns[0]) / 3.6e12 if a.flex_points_ns.size else []
        for building, fields in a.flexibility.items():
            for h in a.horizons_h:
                label = horizon_label(h)
                ax.plot(hours, fields[f"p_up_{label}_kw"], label=f"{building} up {label}")
                ax.plot(hours, -fields[f"p_down_{label}_kw"], linestyle="--", label=f"{building} down {label}")
        ax2 = ax.twinx()
        for building, fields in a.flexibility.items():
            ax2.plot(hours, fields["soc_pct"], color="black", linewidth=0.8, label=f"{building} SoC")
        ax2.set_ylabel("SoC %")
        ax2.set_ylim(0, 100)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xlabel(f"hours from {_iso(int(a.flex_points_ns[0]), a.tz) if a.flex_points_ns.size else ''}")
        ax.legend(fontsize=6, ncol=2)
    else:
        ax.text(0.5, 0.5, "no battery specs: no envelope", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("kW (up > 0: can inject; down < 0: can absorb)")
    ax.set_title("Battery flexibility envelope per horizon (relative to idle, AC terminals)")
    fig.tight_layout()
    written.append(out / "flexibility_envelope.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def _table(columns: list[str], rows: list[dict], fmt: str) -> str:
    if fmt == "html":
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                       for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def render(a: Analysis, out: Path, fmt: str = "md", source: str = "") -> Path:
    """Write ``report.md`` or ``report.html`` next to the tables and plots; returns its path."""
    if fmt not in ("md", "html"):
        raise ValueError("format must be md or html")
    pngs = plot(a, out)
    write_tables(a, out)
    sections: list[tuple[str, str]] = []
    choices = [f"period {_iso(a.start_ns, a.tz)} to {_iso(a.end_ns, a.tz)} ({a.tz}), interval "
               f"{a.interval_ns / 6e10:g} min, source {source or 'n/a'}"]
    choices += [f"{b}: location factor {f.label} = {f.kg_per_kwh} kg/kWh ({f.source})"
                for b, f in a.factors.location.items()]
    choices.append(f"residual factor (market-based) {a.factors.residual.label} = {a.factors.residual.kg_per_kwh}"
                   f" kg/kWh ({a.factors.residual.source})")
    choices.append(f"certificates: {a.factors.matching} matching, used up in time order; "
                   f"given: {a.factors.certificates_mwh or 'none'} (MWh)")
    choices.append("energy balance: losses = (PV + import + discharge) - (load + export + charge); "
                   "complete intervals only (DOMAIN.md §7)")
    sections.append(("Choices", "\n".join(f"- {c}" for c in choices)))
    sections.append(("Daily energy balance", _table(DAILY_COLUMNS[:17], a.daily, fmt)))
    tou = sorted({k for row in a.daily for k in row if k.startswith("grid_import_") and k != "grid_import_kwh"})
    if tou:
        sections.append(("Grid import by time of use", _table(["building", "day", *tou], a.daily, fmt)))
    sections.append(("Emissions per month", _table(MONTHLY_COLUMNS, a.monthly_emissions, fmt)))
    sections.append(("Flexibility envelope", _table(
        ["building", "horizon_h", "points", "p_up_mean_kw", "p_up_min_kw", "p_down_mean_kw", "p_down_min_kw"],
        flex_summary(a), fmt)))
    sections.append(("Notes", "\n".join(f"- {n}" for n in a.notes) or "- none"))
    title = f"PEDF analysis of site {a.site}"
    if fmt == "md":
        text = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{body}" for h, body in sections)
        text += "\n\n## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
        path = out / "report.md"
    else:
        def block(body: str) -> str:
            if body.startswith("<table"):
                return body
            return "<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in body.splitlines()) + "</ul>"

        text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                "<style>table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
                f"</style></head><body><h1>{html.escape(title)}</h1>"
                + "".join(f"<h2>{html.escape(h)}</h2>{block(body)}" for h, body in sections)
                + "<h2>Plots</h2>" + "".join(f"<p><img src='{p.name}' alt='{p.stem}'></p>" for p in pngs)
                + "</body></html>")
        path = out / "report.html"
    path.write_text(text, encoding="utf-8")
    return path
