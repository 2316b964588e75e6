"""The report page: one HTML file with the tables inline and the figures as PNGs next to it.

Written all or nothing: the figures and the page go to a temporary folder beside the target
and move into place only when every one of them was written; a folder, a read-only place or a
full disk is one ConfigError and leaves nothing behind. Every table sits in a box that scrolls
sideways, so no table makes the page wider than the window.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..results.summaries import PROBE_COLUMNS
from .plots import pick_heatmap_runs, plot_gradients, plot_loss, plot_speed, plot_success
from .tables import labelled, row_keys, summary_tables

FIGURES = ("loss", "gradients", "success", "speed")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
p { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; margin: .6em 0 1.2em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f4f4f4; } caption { text-align: left; font-weight: 600; padding: 4px 0; }
caption .note { display: block; font-weight: normal; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; } .note { color: #666; }
"""


def _number(v: float) -> str:
    """3 significant digits, without exponents for large numbers (1035, not 1.04e+03)."""
    return f"{v:.0f}" if abs(v) >= 1000 and v == v and abs(v) != float("inf") else f"{v:.3g}"


def _cell(v) -> str:
    """A table cell as text: '–' for anything missing (never <NA> or nan), numbers by _number."""
    if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
        return "–"
    if isinstance(v, float) or (hasattr(v, "dtype") and v.dtype.kind == "f"):
        return _number(float(v))
    return str(v)


def _table_html(df: pd.DataFrame, caption: str, notes=None) -> str:
    notes = df.attrs.get("notes", []) if notes is None else notes
    if not isinstance(df.index, pd.RangeIndex):  # row keys as plain columns: one header row
        df = df.reset_index()
    df = df.astype(object).map(_cell)
    text = df.to_html(index=False, border=0, escape=True, sparsify=False)
    head = html.escape(caption) + "".join(
        f'<span class="note">{html.escape(n)}</span>' for n in notes
    )
    text = text.replace(">", f"><caption>{head}</caption>", 1)
    return f'<div class="scroll">\n{text}\n</div>'


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


# Newer records: the probes at init and at the end, side by side, and the eval loss's precision.
EVAL_COLUMNS = ["eval_loss_se", "eval_sequences"]


def _present(d: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in d.columns and d[c].notna().any()]


def runs_table(d: pd.DataFrame) -> pd.DataFrame:
    cols = ["run_id", "task", "label", "seq_len", "clip", "lr", "seed", "status", "solved",
            "solved_step", "steps_run", "loss_ratio", "steps_per_second", "train_seconds",
            "grad_ratio_log10"]  # fmt: skip
    cols = [c for c in cols if c in d.columns] + _present(d, [*PROBE_COLUMNS, *EVAL_COLUMNS])
    if "lr" in cols and d["lr"].nunique(dropna=False) < 2:
        cols.remove("lr")
    return d[cols].sort_values(["task", "label", "seq_len", "clip", "seed"]).reset_index(drop=True)


def probe_table(d: pd.DataFrame, pool=()) -> pd.DataFrame | None:
    """Mean over seeds of each probe, init and final side by side, per task, model, T and
    whatever else varies; None when no run recorded them (older records)."""
    from ..results import by_seed

    if not _present(d, PROBE_COLUMNS):
        return None
    rows = [k for k in row_keys(d, pool=pool) if k != "label"]
    stats = by_seed(d, ["task", "label", "seq_len", *rows])
    cols = [c for c in (f"{p}_mean" for p in PROBE_COLUMNS) if c in stats.columns]
    table = stats[["runs", *cols]].rename(columns=lambda c: c.removesuffix("_mean"))
    table.attrs["notes"] = ["mean over seeds; init: before the first update, final: at the end"]
    return table


def write_report(out="results", html_path=None, title: str | None = None, pool=()) -> Path:
    """Write the HTML report of the runs under ``out`` and its PNGs next to it; return its path.
    All or nothing: a place that cannot be written is a ConfigError and nothing is left there."""
    from .. import results

    out = Path(out)
    df = results.load(out)
    if df.empty:
        raise ConfigError(f"no runs in {out}/: run 'seqbench sweep SUITE --out {out}' first")
    path = Path(html_path) if html_path else out / "report.html"
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give a file name, e.g. --html {path}/report.html")
    d = labelled(df)
    created = _first_missing(path.parent)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=path.parent))
        drawn = _draw_figures(out, d, tmp / path.name, pool)
        sections = _sections(out, df, d, drawn, list(pool))
        page = _page(title or f"seqbench report: {out}", df, sections, results.utc_now())
        (tmp / path.name).write_text(page)
        _move_into_place(tmp, path, drawn)
    except OSError as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise ConfigError(
            f"cannot write the report {path}: {e.strerror or e}; nothing was written"
        ) from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s chain that does not exist yet (removed on failure)."""
    missing = None
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _move_into_place(tmp: Path, path: Path, drawn: dict) -> None:
    """Figures first, the page last; then figures of an earlier report not drawn this time."""
    for name in drawn.values():
        os.replace(tmp / name, path.with_name(name))
    os.replace(tmp / path.name, path)
    for name in FIGURES:
        png = path.with_name(f"{path.stem}-{name}.png")
        if png.name not in drawn.values():
            png.unlink(missing_ok=True)  # never leave a stale figure from an earlier report


def _draw_figures(out: Path, d: pd.DataFrame, path: Path, pool=()) -> dict:
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
        "success": lambda p: plot_success(d, p, pool),
        "speed": lambda p: plot_speed(d, p),
    }
    for name in FIGURES:
        png = path.with_name(f"{path.stem}-{name}.png")
        if draw[name](png):
            drawn[name] = png.name
    return drawn


def _sections(out: Path, df: pd.DataFrame, d: pd.DataFrame, drawn: dict, pool: list) -> list:
    tables = summary_tables(df, pool=pool)
    clipping = [k for k in tables if k.startswith("clipping")]
    speed = [k for k in tables if k.endswith("steps per second")]
    solved = [k for k in tables if k not in clipping and k not in speed]
    probes = probe_table(d, pool)
    sections = [
        _section("solved", "Which model solves which length",
                 [_table_html(tables[k], k) for k in solved]),
        _section("loss", "Loss against the memoryless baseline",
                 _drawn(drawn, "loss", "training loss vs steps",
                        "no per-step histories (reservoir runs have none)")
                 + [_note("Training loss, smoothed; the dashed line is the task's memoryless "
                          "baseline, an x marks a diverged run.")]),
        _section("gradients", "Vanishing gradients: log10 ||dL/dh_t|| over t and training step",
                 _drawn(drawn, "gradients", "gradient norm heatmaps",
                        "no gradient profiles recorded")
                 + [_note("One run per model at the longest T (lowest seed); shared colour "
                          "scale. A dark left edge is a gradient that does not reach the early "
                          "steps.")]
                 + ([_table_html(probes, "probes of the recurrence, init and final")]
                    if probes is not None else [])),
        _section("success", "Success rate against T", _drawn(drawn, "success", "solved rate vs T")
                 + [_note("Markers tell the models apart; lines that coincide are nudged "
                          "sideways a little. Bars: 95% t interval over seeds.")]),
        _section("speed", "Speed per backend",
                 _drawn(drawn, "speed", "throughput per backend")
                 + [_table_html(tables[k], k) for k in speed]),
        _section("clipping", "Clipping and divergence",
                 [_table_html(tables[k], k) for k in clipping]
                 or [_note("all runs use one clipping setting")]),
    ]  # fmt: skip
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
