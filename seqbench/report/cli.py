"""``seqbench report``: its arguments and what it prints."""

from __future__ import annotations

from .html import write_report


def add_arguments(p) -> None:
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--html", default=None, help="report file (default: OUT/report.html)")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--pool", action="append", default=[], metavar="COLUMN",
                   help="pool runs over this config column in the tables (repeatable)")  # fmt: skip


def main(args) -> int:
    pool = [c.strip() for text in args.pool for c in text.split(",") if c.strip()]
    path = write_report(args.out, args.html, args.title, pool=pool)
    pngs = sorted(p.name for p in path.parent.glob(f"{path.stem}-*.png"))
    print(f"wrote {path} and {len(pngs)} figures next to it ({', '.join(pngs)})")
    return 0
