"""The report page: one HTML file with the tables inline and the figures as PNGs next to it."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from .plots import pick_heatmap_runs, plot_gradients, plot_loss, plot_speed, plot_success
from .tables import labelled, summary_tables

FIGURES = ("loss", "gradients", "success", "speed")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; }
th { background: #f4f4f4; } caption { text-align: left; font-weight: 600; padding: 4px 0; }
img { max-width: 100%; border: 1px solid #ddd; } .note { color: #666; }
"""


def _number(v: float) -> str:
    """3 significant digits, without exponents for large numbers (1035, not 1.04e+03)."""
    return f"{v:.0f}" if abs(v) >= 1000 and v == v and abs(v) != float("inf") else f"{v:.3g}"


def _table_html(df: pd.DataFrame, caption: str) -> str:
    if not isinstance(df.index, pd.RangeIndex):  # row keys as plain columns: one header row
        df = df.reset_index()
    text = df.to_html(
        index=False,
        na_rep="-",
        float_format=_number,
        border=0,
        escape=True,
        sparsify=False,
    )
    return text.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)


def _section(sid: str, title: str, body: list[str]) -> str:
    return (
        f'<section id="{sid}">\n<h2>{html.escape(title)}</h2>\n' + "\n".join(body) + "\n</section>"
    )


def _img(name: str, alt: str) -> str:
    return f'<p><img src="{html.escape(name)}" alt="{html.escape(alt)}"></p>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _drawn(drawn: dict, name: str, alt: str, missing: str | None = None) -> list[str]:
    """Figure ``name`` if it was drawn, else a note saying why not (or nothing)."""
    if name in drawn:
        return [_img(drawn[name], alt)]
    return [_note(missing)] if missing else []


# Columns of the sweep log shown in the report, in this order.
SWEEP_COLUMNS = ["suite", "finished_at", "planned", "skipped", "ran", "failed", "retries",
                 "executor", "wall_seconds", "train_seconds", "worker_busy_seconds",
                 "utilisation", "first_start_seconds", "median_run_overhead_seconds"]  # fmt: skip


def _sweep_log(out: Path) -> pd.DataFrame | None:
    from ..results import load_sweep_log

    frame = load_sweep_log(out)
    if frame is None:
        return None
    return frame[[c for c in SWEEP_COLUMNS if c in frame.columns]]


def runs_table(d: pd.DataFrame) -> pd.DataFrame:
    cols = ["run_id", "task", "label", "seq_len", "clip", "seed", "status", "solved",
            "solved_step", "steps_run", "loss_ratio", "steps_per_second", "train_seconds",
            "grad_ratio_log10"]  # fmt: skip
    cols = [c for c in cols if c in d.columns]
    return d[cols].sort_values(["task", "label", "seq_len", "clip", "seed"]).reset_index(drop=True)


def write_report(out="results", html_path=None, title: str | None = None) -> Path:
    """Write the HTML report of the runs under ``out`` and its PNGs next to it; return its path."""
    from .. import results

    out = Path(out)
    df = results.load(out)
    if df.empty:
        raise ConfigError(f"no runs in {out}/: run 'seqbench sweep SUITE --out {out}' first")
    path = Path(html_path) if html_path else out / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    d = labelled(df)
    drawn = _draw_figures(out, d, path)
    sections = _sections(out, df, d, drawn)
    title = title or f"seqbench report: {out}"
    path.write_text(_page(title, df, sections, results.utc_now()))
    return path


def _draw_figures(out: Path, d: pd.DataFrame, path: Path) -> dict:
    """Figure name -> PNG file name, for the figures there was something to draw."""
    from .. import results

    ids = list(d["run_id"])
    history = results.load_history(out, ids)
    profiles = results.load_profiles(out, ids)
    picked = pick_heatmap_runs(d, set(profiles["run_id"]))
    drawn = {}
    draw = {
        "loss": lambda p: plot_loss(d, history, p),
        "gradients": lambda p: plot_gradients(picked, profiles, p),
        "success": lambda p: plot_success(d, p),
        "speed": lambda p: plot_speed(d, p),
    }
    for name in FIGURES:
        png = path.with_name(f"{path.stem}-{name}.png")
        png.unlink(missing_ok=True)  # never leave a stale figure from an earlier report
        if draw[name](png):
            drawn[name] = png.name
    return drawn


def _sections(out: Path, df: pd.DataFrame, d: pd.DataFrame, drawn: dict) -> list[str]:
    tables = summary_tables(df)
    per_task = {k: v for k, v in tables.items() if not k.startswith("clipping")}
    sections = [
        _section(
            "solved",
            "Which model solves which length",
            [_table_html(t, k) for k, t in per_task.items()],
        ),
        _section(
            "loss",
            "Loss against the memoryless baseline",
            _drawn(
                drawn,
                "loss",
                "training loss vs steps",
                "no per-step histories (reservoir runs have none)",
            )
            + [
                _note(
                    "Training loss, smoothed; the dashed line is the task's memoryless "
                    "baseline, an x marks a diverged run."
                )
            ],
        ),  # fmt: skip
        _section(
            "gradients",
            "Vanishing gradients: log10 ||dL/dh_t|| over t and training step",
            _drawn(drawn, "gradients", "gradient norm heatmaps", "no gradient profiles recorded")
            + [
                _note(
                    "One run per model at the longest T (lowest seed); shared colour scale. "
                    "A dark left edge is a gradient that does not reach the early steps."
                )
            ],
        ),  # fmt: skip
        _section("success", "Success rate against T", _drawn(drawn, "success", "solved rate vs T")),
        _section(
            "speed",
            "Speed per backend",
            _drawn(drawn, "speed", "throughput per backend")
            + [_table_html(t, k) for k, t in per_task.items() if k.endswith("steps per second")],
        ),
        _section(
            "clipping",
            "Clipping and divergence",
            [_table_html(tables[k], k) for k in tables if k.startswith("clipping")]
            or [_note("all runs use one clipping setting")],
        ),
    ]
    log = _sweep_log(out)
    if log is not None:
        sections.append(_section("sweeps", "Sweeps", [_table_html(log, "sweep invocations")]))
    runs = runs_table(d)
    details = [
        f"<details{' open' if len(runs) <= 40 else ''}><summary>table</summary>",
        _table_html(runs, "runs"),
        "</details>",
    ]
    sections.append(_section("runs", f"All runs ({len(runs)})", details))
    return sections


def _page(title: str, df: pd.DataFrame, sections: list[str], generated: str) -> str:
    env = {c: ", ".join(sorted(map(str, df[c].dropna().unique()))) for c in
           ("cpu", "gpu", "numba_version", "seqbench_version", "git_commit")}  # fmt: skip
    head = (
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p>{len(df)} runs, {df['task'].nunique()} task(s), generated "
        f"{html.escape(generated)}. "
        + "; ".join(f"{k}: {html.escape(v)}" for k, v in env.items() if v)
        + "</p>"
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + head + "\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )  # fmt: skip
