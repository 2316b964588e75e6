"""``seqbench report``: its arguments and what it prints."""

from __future__ import annotations

from .html import write_report


def add_arguments(p) -> None:
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--html", default=None, help="report file (default: OUT/report.html)")
    p.add_argument("--title", default=None, help="report title")


def main(args) -> int:
    path = write_report(args.out, args.html, args.title)
    pngs = sorted(p.name for p in path.parent.glob(f"{path.stem}-*.png"))
    print(f"wrote {path} and {len(pngs)} figures next to it ({', '.join(pngs)})")
    return 0
