"""``pedf`` — the command line: check, run, simulate, status, demo, analyze, deadletter."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request

from gateway.errors import ConfigError, JournalError, PedfError
from gateway.logs import setup_logging
from gateway.redact import redact, redact_url


def _load(path: str):
    from gateway.config import load_site

    return load_site(path)


def cmd_check(args: argparse.Namespace) -> int:
    from drivers.modbus import plan_requests

    site = _load(args.site)
    print(
        f"site {site.name} ({site.config.site.timezone}): {len(site.config.buildings)} building(s), "
        f"{len(site.devices)} device(s), {len(site.config.sinks)} sink(s) — configuration is valid"
    )
    from gateway.service import line_key

    for d in site.devices:
        s = d.section
        plan = plan_requests(d.points, max_registers=d.max_registers, max_gap=s.max_gap, holes=d.holes)
        reqs = ", ".join(f"FC{r.function_code:02d}@{r.address}+{r.count}" for r in plan.requests)
        print(
            f"  {d.name:<20} {d.device_class:<18} {line_key(d):<24} unit {s.unit_id:<3} every {s.interval_s:g} s: "
            f"{len(d.points)} fields in {len(plan.requests)} request(s) [{reqs}]"
        )
    for sink in site.config.sinks:
        print(f"  sink {sink.name}: {sink.type} {redact_url(sink.url)}")
    for warning in site.warnings:
        print(f"warning: {warning}")
    if args.learned:
        return _print_learned(args.journal or site.config.journal.path)
    return 0


def _print_learned(path: str) -> int:
    """The register ranges devices refused, as the gateway learned them (read-only on the journal)."""
    from pathlib import Path

    from gateway.journal import JournalReader

    if not Path(path).is_file():
        print(f"learned holes: none (no journal at {path} yet)")
        return 0
    try:
        with JournalReader(path) as reader:
            learned = reader.learned_holes()
    except JournalError as exc:
        print(f"pedf check --learned: {exc}", file=sys.stderr)
        return 1
    print(f"learned holes in {path}: {sum(len(v) for v in learned.values()) or 'none'}")
    for device, holes in sorted(learned.items()):
        for h in holes:
            where = f"no request across {h.start}" if h.end == h.start else f"{h.start}..{h.end - 1}"
            print(f"  {device:<20} FC{h.function_code:02d} {where:<24} exception {h.code}, "
                  f"learned {_when(h.learned_ns)}")
    return 0


def _when(ts_ns: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts_ns / 1e9, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dump_tasks() -> None:
    """SIGUSR1: print every asyncio task's stack to stderr (what is the service waiting for?)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()} done={task.done()}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.service import Gateway, tune_gc

    site = _load(args.site)
    for warning in site.warnings:
        logging.getLogger("pedf.gateway").warning("configuration: %s", warning)
    gateway = Gateway(site, journal_path=args.journal)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        def request_stop() -> None:
            # what is committed is safe on disk: a shutdown stuck for longer than the deadline says
            # where it waits and exits, as a supervisor's SIGKILL would
            if not stop.is_set():
                loop.call_later(args.stop_timeout, stuck_shutdown)
            stop.set()

        def stuck_shutdown() -> None:
            logging.getLogger("pedf.gateway").error("shutdown took longer than %s s; exiting", args.stop_timeout)
            dump_tasks()
            os._exit(3)

        loop.add_signal_handler(signal.SIGINT, request_stop)
        loop.add_signal_handler(signal.SIGTERM, request_stop)
        loop.add_signal_handler(signal.SIGHUP, gateway.request_reload)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        def ready() -> None:
            tune_gc()
            print("ready", flush=True)

        await gateway.run(stop, on_ready=ready)

    failed = False
    try:
        asyncio.run(main())
    except* JournalError as group:  # the journal cannot commit: nothing can be acknowledged, stop
        for exc in group.exceptions:
            logging.getLogger("pedf.gateway").error("stopped: %s", exc)
        failed = True
    return 2 if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.demo import simulate_site

    site = _load(args.site)
    asyncio.run(simulate_site(site, speed=args.speed, seed=args.seed, poll_log=args.poll_log))
    return 0


TOKEN_ENV = "PEDF_API_TOKEN"


def _status_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API's URL and token: ``--url`` or the site file's ``api:``; the token from the site file
    or ``$PEDF_API_TOKEN`` (never a command-line argument, which any user sees in ``ps``)."""
    url, token = args.url, os.environ.get(TOKEN_ENV) or None
    if args.site:
        api = _load(args.site).config.api
        if url is None:
            host = "127.0.0.1" if api.host in ("", "0.0.0.0", "::") else api.host
            url = f"http://{f'[{host}]' if ':' in host else host}:{api.port}"
        if api.token is not None and token is None:
            token = api.token.get_secret_value()
    return url or "http://127.0.0.1:8780", token


def cmd_status(args: argparse.Namespace) -> int:
    url, token = _status_target(args)
    request = urllib.request.Request(url.rstrip("/") + "/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            st = json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            print(f"the gateway at {redact_url(url)} requires its API token: pass the site file "
                  f"(pedf status site.yaml) or set {TOKEN_ENV}" + (" (the token given was refused)" if token else ""),
                  file=sys.stderr)
        else:
            print(f"the gateway at {redact_url(url)} answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(redact(f"no gateway answers at {url}: {exc}", (token or "",)), file=sys.stderr)
        return 1
    if args.json:
        print(redact(json.dumps(st, indent=2)))
        return 0
    from gateway.service import GatewayStatus, render_status

    print(render_status(GatewayStatus.from_json(st)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return asyncio.run(run_demo(args.site, simulated_s=args.hours * 3600, speed=args.speed, influx_url=args.influx_url))


def cmd_deadletter(args: argparse.Namespace) -> int:
    from gateway.journal import Journal

    path = args.journal or _load(args.site).config.journal.path

    async def main() -> None:
        async with Journal(path) as journal:
            rows = await journal.dead_letters(args.sink, limit=args.limit)
            payloads = [] if args.sink else await journal.payload_dead_letters(limit=args.limit)
        for row in rows:
            print(row)
        print(f"{len(rows)} dead-lettered line(s)")
        for p in payloads:
            shown = p.payload[:200].decode("utf-8", "backslashreplace")
            print(f"{p.id} {p.source} at_ns={p.at_ns} topic={p.topic!r} reason={p.reason!r} payload={shown!r}")
        if not args.sink:
            print(f"{len(payloads)} dead-lettered payload(s)")

    asyncio.run(main())
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from drivers.modbus import SunSpecError
    from gateway.cli._scan import scan_sunspec

    host, _, port = args.address.partition(":")
    try:
        text = asyncio.run(scan_sunspec(host, int(port or 502), args.unit, device_class=args.device_class))
    except (SunSpecError, ConnectionError, TimeoutError) as exc:
        print(f"scan of {args.address} unit {args.unit} failed: {exc}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"profile written to {args.output}")
    else:
        print(text, end="")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from gateway.analysis import run_analyze

    site = _load(args.site)
    try:
        asyncio.run(run_analyze(
            site, start=args.start, end=args.end, source=args.source, out=args.out, fmt=args.format,
            regime=args.regime, year=args.year, residual=args.residual, write_influx=args.write_influx,
            journal_path=args.journal, influx_url=args.influx_url, influx_db=args.influx_db,
            interval_s=args.interval_s, p_max_kw=args.p_max_kw))
    except (PedfError, OSError, ValueError) as exc:  # ValueError: the analytics kernels refused their input
        print(redact(f"pedf analyze: {exc}"), file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pedf", description="PEDF building gateway and analytics")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate a site file and print the polling plan (touches no device)")
    c.add_argument("site")
    c.add_argument("--learned", action="store_true",
                   help="also list the register ranges devices refused, as learned in the journal")
    c.add_argument("--journal", help="journal path for --learned (default: the site file's journal.path)")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("run", help="run the gateway service for a site")
    r.add_argument("site")
    r.add_argument("--journal", help="journal path (default: the site file's journal.path)")
    r.add_argument("--stop-timeout", type=float, default=30.0, help="seconds a graceful stop may take")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("simulate", help="serve the site's devices from the PEDF building simulator")
    s.add_argument("site")
    s.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--poll-log", help="append one line per served read to this file")
    s.set_defaults(func=cmd_simulate)

    st = sub.add_parser("status", help="devices up/down, samples/s, journal backlog per sink")
    st.add_argument("site", nargs="?", help="site file: the API's address and token (api:)")
    st.add_argument("--url", help="the gateway's API (default: the site file's api:, else http://127.0.0.1:8780)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    d = sub.add_parser("demo", help="simulated PEDF building read by the gateway for one simulated day")
    d.add_argument("site", nargs="?", default="examples/demo-site.yaml")
    d.add_argument("--hours", type=float, default=24.0, help="simulated hours to run")
    d.add_argument("--speed", type=float, default=1440.0, help="simulated seconds per real second")
    d.add_argument("--influx-url", help="also write to an InfluxDB 1.x at this URL (database pedf)")
    d.set_defaults(func=cmd_demo)

    sc = sub.add_parser("scan", help="find a SunSpec device's models and print a profile for it")
    sc.add_argument("address", help="HOST[:PORT] of a Modbus TCP device")
    sc.add_argument("--unit", type=int, default=1)
    sc.add_argument("--device-class", default="pv_inverter", help="measurement name for its samples")
    sc.add_argument("-o", "--output", help="write the profile to this file")
    sc.set_defaults(func=cmd_scan)

    an = sub.add_parser("analyze", help="energy balance, emissions and flexibility of a period: tables, report, plots")
    an.add_argument("site")
    an.add_argument("--from", dest="start", required=True, help="date or ISO time (site-local without an offset)")
    an.add_argument("--to", dest="end", help="date or ISO time, exclusive (default: now)")
    an.add_argument("--source", default="journal", help="journal | csv:PATH | parquet:PATH | influx")
    an.add_argument("--journal", help="journal path (default: the site file's journal.path)")
    an.add_argument("--influx-url", help="InfluxDB 1.x URL to read from / write to (default: the site's sink)")
    an.add_argument("--influx-db", help="InfluxDB 1.x database (default: the sink's, or pedf)")
    an.add_argument("--out", default="analysis", help="output folder for tables, plots and the report")
    an.add_argument("--format", choices=["md", "html"], default="md")
    an.add_argument("--regime", help="location-based factor regime, e.g. mee_nbs_grid_average")
    an.add_argument("--year", type=int, help="factor data year (required with --regime without analytics:)")
    an.add_argument("--residual", help="residual factor REGIME/REGION/YEAR for market-based Scope 2")
    an.add_argument("--interval-s", type=float, help="interval in seconds (default: analytics: or 900)")
    an.add_argument("--p-max-kw", type=float, help="plausible circuit maximum, tells a rollover from a reset")
    an.add_argument("--write-influx", action="store_true",
                    help="write energy_kpi, emissions, flexibility to InfluxDB (--influx-url or the site's sinks)")
    an.set_defaults(func=cmd_analyze)

    dl = sub.add_parser("deadletter", help="lines a database refused, kept aside")
    dl_sub = dl.add_subparsers(dest="action", required=True)
    ls = dl_sub.add_parser("list")
    ls.add_argument("site", nargs="?")
    ls.add_argument("--journal")
    ls.add_argument("--sink")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=cmd_deadletter)

    from gateway.cli._journal import add_journal_parser

    add_journal_parser(sub)
    return p


def _redacted_excepthook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
    """An exception nobody caught is printed redacted too (its message may hold a URL)."""
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    sys.excepthook = _redacted_excepthook
    args = build_parser().parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error{'s' if len(exc.problems) > 1 else ''}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {redact(str(problem))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
