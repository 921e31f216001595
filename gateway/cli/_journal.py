"""``pedf journal check FILE`` and ``pedf journal recover FILE [--out NEW]``.

Why offline commands: a journal found damaged at start-up is moved aside and the gateway goes on
with a fresh one; what the moved file still holds is the operator's to salvage, at leisure, without
a running gateway (docs/journal.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.errors import JournalError


def cmd_journal_check(args: argparse.Namespace) -> int:
    from gateway.journal import check_journal

    try:
        report = check_journal(Path(args.file))
    except JournalError as exc:
        print(f"pedf journal check: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_journal_recover(args: argparse.Namespace) -> int:
    from gateway.journal import recover_journal

    src = Path(args.file)
    out = Path(args.out) if args.out else src.with_name(src.name + ".recovered.db")
    use_cli = True if args.sqlite3 else (False if args.row_by_row else None)
    try:
        report = recover_journal(src, out, use_sqlite_cli=use_cli)
    except JournalError as exc:
        print(f"pedf journal recover: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def add_journal_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    j = sub.add_parser("journal", help="check a journal file, salvage a damaged one")
    j_sub = j.add_subparsers(dest="action", required=True)
    c = j_sub.add_parser("check", help="structure, WAL and marker of a journal file (read-only); exit 1 if damaged")
    c.add_argument("file")
    c.set_defaults(func=cmd_journal_check)
    r = j_sub.add_parser("recover", help="copy what is readable of a journal into a new journal file")
    r.add_argument("file")
    r.add_argument("--out", help="the new journal (default: FILE.recovered.db); must not exist")
    how = r.add_mutually_exclusive_group()
    how.add_argument("--sqlite3", action="store_true", help="use the sqlite3 shell's .recover (must be installed)")
    how.add_argument("--row-by-row", action="store_true", help="copy row by row through SQL, without the shell")
    r.set_defaults(func=cmd_journal_recover)
