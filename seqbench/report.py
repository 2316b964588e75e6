"""Comparison tables and an HTML report with plots, from a results directory.

Tables (pandas, reused by ``seqbench sweep``'s summary): per task, model x T of runs solved
over seeds ("which model solves which length"), median steps to solve, median final loss /
baseline and median steps per second; and, when a sweep varies clipping, divergence and
solve rates per clipping setting.

The report (``seqbench report``) is one HTML file with the tables inline and PNG figures
written next to it: loss against the memoryless baseline, heatmaps of log10 ||dL/dh_t|| over
t and training step (the vanishing-gradient picture), success rate and final loss / baseline
against T, and speed per backend. matplotlib is imported only here, only when drawing,
with no global backend state (Figure + its Agg canvas).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .errors import ConfigError

# Config columns that, when they vary within a task, become row keys of its tables.
ROW_CANDIDATES = (
    "clip", "hidden_size", "init", "optimizer", "lr", "batch_size", "steps", "dtype", "backend",
)  # fmt: skip
FIGURES = ("loss", "gradients", "success", "speed")
MAX_HEATMAPS = 6
MAX_LOSS_ROWS = 8


# ---------------------------------------------------------------- labels


def _options(df: pd.DataFrame) -> list[dict]:
    out = []
    for text in df["options"]:
        try:
            value = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            value = {}
        out.append(value if isinstance(value, dict) else {})
    return out


def model_labels(df: pd.DataFrame) -> pd.Series:
    """'lstm', 'lstm-bi', 'gru x2', 'esn leak=0.3': the model plus what tells its runs apart.

    Options appear only when they differ between runs of the same model in ``df``.
    """
    opts = _options(df)
    models = list(df["model"])
    varying = {}  # model -> option keys whose values differ between its runs
    for model in set(models):
        mine = [o for o, m in zip(opts, models, strict=True) if m == model]
        keys = {k for o in mine for k in o}
        varying[model] = sorted(k for k in keys if len({json.dumps(o.get(k)) for o in mine}) > 1)
    labels = []
    for (_, row), o in zip(df.iterrows(), opts, strict=True):
        label = str(row["model"])
        if _true(row.get("bidirectional")):
            label += "-bi"
        if pd.notna(row.get("num_layers")) and int(row["num_layers"]) > 1:
            label += f" x{int(row['num_layers'])}"
        label += "".join(f" {k}={o[k]}" for k in varying[row["model"]] if k in o)
        labels.append(label)
    return pd.Series(labels, index=df.index, dtype="string")


def _true(value) -> bool:
    return bool(value) if value is not None and not pd.isna(value) else False


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    d["label"] = model_labels(d) if len(d) else pd.Series(dtype="string")
    return d


def row_keys(d: pd.DataFrame, columns: str = "seq_len") -> list[str]:
    """'label' and every candidate config column that varies within a column of the table
    (one that only changes with T, such as steps set per T, would just split the rows)."""
    keys = ["label"]
    for c in ROW_CANDIDATES:
        if c in d.columns and c != columns and d[c].nunique(dropna=False) > 1:
            if d.groupby(columns, dropna=False)[c].nunique(dropna=False).max() > 1:
                keys.append(c)
    return keys


# ---------------------------------------------------------------- tables


def pivot(d: pd.DataFrame, value: str, rows: list[str], columns: str = "seq_len") -> pd.DataFrame:
    """One results.SUMMARIES value, rows x ``columns`` (T=... by default)."""
    from .results import compare

    table = compare(d, by=[*rows, columns], values=[value])[value].unstack(columns)
    if columns == "seq_len":
        table.columns = [f"T={int(t)}" if pd.notna(t) else "T=?" for t in table.columns]
    return table


def solved_table(d: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """'k/n' runs solved, over seeds: the classic which-model-solves-which-length table."""
    rate = pivot(d, "solved_rate", rows)
    runs = pivot(d, "runs", rows)
    cells = {
        c: [
            "-" if pd.isna(n) else f"{round(r * n)}/{int(n)}"
            for r, n in zip(rate[c], runs[c], strict=True)
        ]
        for c in rate.columns
    }
    return pd.DataFrame(cells, index=rate.index)


def clipping_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per task, model and clipping setting: runs, divergence and solve rates, clipped steps."""
    from .results import compare

    d = labelled(df)
    by = ["task", "label", "clip"]
    table = compare(d, by=by, values=["runs", "diverged_rate", "solved_rate", "loss_ratio_median"])
    groups = d.groupby(by, sort=True, dropna=False)
    table["clipped_steps_mean"] = groups["clip_fraction"].mean()
    table["max_preclip_norm_median"] = groups["max_preclip_norm"].median()
    return table


def summary_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Title -> table: per task the four model x T pivots, then clipping if it varies."""
    tables = {}
    if df.empty:
        return tables
    for task in sorted(df["task"].dropna().unique()):
        d = labelled(df[df["task"] == task])
        rows = row_keys(d)
        tables[f"{task}: runs solved (model x T, over seeds)"] = solved_table(d, rows)
        tables[f"{task}: median steps to solve"] = pivot(d, "solved_step_median", rows)
        tables[f"{task}: median final loss / baseline"] = pivot(d, "loss_ratio_median", rows)
        tables[f"{task}: median steps per second"] = pivot(d, "steps_per_second_median", rows)
    if df["clip"].nunique() > 1:
        tables["clipping: divergence and solve rates"] = clipping_table(df)
    return tables


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colours(labels) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(sorted(set(labels)))}


STYLES = ("-", "--", ":", "-.")


def plot_loss(d: pd.DataFrame, history: pd.DataFrame, path: Path) -> bool:
    """Training loss (smoothed) against the memoryless baseline, per task x T (x clip)."""
    d = d[d["run_id"].isin(set(history["run_id"]))]
    if d.empty:
        return False
    facets = sorted({(t, int(s)) for t, s in zip(d["task"], d["seq_len"], strict=True)})
    facets = facets[:MAX_LOSS_ROWS]
    clips = sorted(d["clip"].unique()) if d["clip"].nunique() > 1 else [None]
    clips = clips[: len(STYLES)]
    colours = _colours(d["label"])
    fig = _figure(4.2 * len(clips) + 1.5, 2.6 * len(facets) + 0.4)
    axes = fig.subplots(len(facets), len(clips), squeeze=False, sharex=True)
    by_run = dict(tuple(history.groupby("run_id", sort=False)))
    for i, (task, T) in enumerate(facets):
        for j, clip in enumerate(clips):
            ax = axes[i][j]
            sel = d[(d["task"] == task) & (d["seq_len"] == T)]
            if clip is not None:
                sel = sel[sel["clip"] == clip]
            for _, r in sel.sort_values(["label", "seed"]).iterrows():
                h = by_run[r["run_id"]]
                loss = h["loss"].astype(float)
                window = max(1, len(loss) // 40)
                ax.plot(h["step"].astype(float), loss.rolling(window, min_periods=1).mean(),
                        color=colours[r["label"]], lw=1.2, alpha=0.85,
                        label=r["label"])  # fmt: skip
                if r["status"] == "diverged":
                    ax.plot(float(h["step"].iloc[-1]), 1.0, "x", color=colours[r["label"]],
                            transform=ax.get_xaxis_transform(), ms=8)  # fmt: skip
            if len(sel):
                ax.axhline(float(sel["baseline_loss"].iloc[0]), color="k", ls="--", lw=1,
                           label="baseline (memoryless)")  # fmt: skip
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis)
            title = f"{task}  T={T}" + (f"  clip {clip}" if clip else "")
            ax.set_title(title, fontsize=10)
            if i == len(facets) - 1:
                ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel("training loss")
    handles, labels = {}, []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[k] for k in labels], labels, loc="outside right upper", fontsize=9)
    fig.savefig(path)
    return True


def pick_heatmap_runs(d: pd.DataFrame, with_profiles: set) -> pd.DataFrame:
    """One run per model at the longest T of the task with the most profiled runs."""
    d = d[d["run_id"].isin(with_profiles)]
    if d.empty:
        return d
    task = d["task"].value_counts().sort_index().idxmax()
    d = d[d["task"] == task]
    d = d[d["seq_len"] == d["seq_len"].max()]
    d = d.sort_values(["label", "seed", "clip"])
    return d.groupby("label", sort=True).head(1).head(MAX_HEATMAPS)


def plot_gradients(picked: pd.DataFrame, profiles: pd.DataFrame, path: Path) -> bool:
    """log10 ||dL/dh_t||: t across, training step up; one panel per run, one colour scale."""
    import numpy as np

    if picked.empty:
        return False
    grids = []
    for _, r in picked.iterrows():
        p = profiles[profiles["run_id"] == r["run_id"]]
        p = p[p["layer_dir"] == sorted(p["layer_dir"].unique())[0]]
        z = p.pivot_table(index="step", columns="t", values="dh_norm").sort_index()
        values = np.log10(np.maximum(z.to_numpy(dtype=float), 1e-30))
        grids.append((r, z.columns.to_numpy(dtype=float), z.index.to_numpy(dtype=float), values))
    finite = np.concatenate([g[3][np.isfinite(g[3])] for g in grids])
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (-8.0, 0.0)
    n = len(grids)
    fig = _figure(3.6 * n + 1.2, 3.4)
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    mesh = None
    for ax, (r, ts, steps, values) in zip(axes, grids, strict=True):
        mesh = ax.pcolormesh(ts, steps, values, shading="nearest", cmap="viridis",
                             vmin=vmin, vmax=vmax)  # fmt: skip
        ax.set_title(f"{r['label']}  T={int(r['seq_len'])}  clip {r['clip']}", fontsize=10)
        ax.set_xlabel("t (sequence position)")
    axes[0].set_ylabel("training step")
    fig.colorbar(mesh, ax=list(axes), label="log10 ||dL/dh_t||")
    fig.savefig(path)
    return True


def plot_success(d: pd.DataFrame, path: Path) -> bool:
    """Per task against T: the fraction of runs solved (top) and the median final loss over
    the baseline (bottom, which still tells the models apart where none solves); one line per
    model, and per clipping setting if it varies."""
    from .results import compare

    d = d[d["status"].notna()]
    tasks = sorted(d["task"].unique())
    if not tasks:
        return False
    clip_varies = d["clip"].nunique() > 1
    clip_style = {c: STYLES[i % len(STYLES)] for i, c in enumerate(sorted(d["clip"].unique()))}
    colours = _colours(d["label"])
    fig = _figure(4.4 * len(tasks) + 1.8, 5.6)
    axes = fig.subplots(2, len(tasks), squeeze=False, sharex="col")
    by = ["label", "clip"] if clip_varies else ["label"]
    for col, task in enumerate(tasks):
        sel = d[d["task"] == task]
        table = compare(sel, by=[*by, "seq_len"], values=["solved_rate", "loss_ratio_median"])
        for key, rows in table.groupby(level=list(range(len(by))), sort=True):
            key = key if isinstance(key, tuple) else (key,)
            ts = rows.index.get_level_values("seq_len").astype(float)
            style = dict(marker="o", color=colours[key[0]],
                         ls=clip_style[key[1]] if clip_varies else "-",
                         label=key[0] + (f", clip {key[1]}" if clip_varies else ""))  # fmt: skip
            axes[0][col].plot(ts, rows["solved_rate"].to_numpy(), **style)
            axes[1][col].plot(ts, rows["loss_ratio_median"].to_numpy(), **style)
        axes[0][col].set_ylim(-0.05, 1.05)
        axes[0][col].set_title(task, fontsize=10)
        axes[1][col].axhline(1.0, color="k", ls="--", lw=1)
        axes[1][col].set_yscale("log")
        _plain_log_ticks(axes[1][col].yaxis)
        ts = sorted(sel["seq_len"].dropna().astype(int).unique())
        if len(ts) > 1 and ts[-1] / max(ts[0], 1) >= 8:
            axes[1][col].set_xscale("log")
            axes[1][col].minorticks_off()
        axes[1][col].set_xticks(ts, [str(t) for t in ts])
        axes[1][col].set_xlabel("T")
    axes[0][0].set_ylabel("fraction of runs solved")
    axes[1][0].set_ylabel("final loss / baseline (median)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=9)
    fig.savefig(path)
    return True


def _plain_log_ticks(axis) -> None:
    """Tick labels 0.3, 1, 2 on a log axis instead of 3x10^-1; minor ones at 2, 3 and 5 only."""
    import math

    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return f"{v:g}" if lead in (2, 3, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def plot_speed(d: pd.DataFrame, path: Path) -> bool:
    """Median sequence steps per second (batch x T per second) per model (and size, if it
    varies), a bar per backend."""
    import numpy as np

    col = "sequence_steps_per_second"
    sel = d[pd.to_numeric(d[col], errors="coerce").notna()]
    if sel.empty:
        return False
    group = sel["label"]
    if sel["hidden_size"].nunique() > 1:  # reservoirs of several sizes: one bar each
        group = group + " H=" + sel["hidden_size"].astype("string")
    table = (
        sel.assign(v=sel[col].astype(float), group=group)
        .groupby(["group", "backend"], sort=True)["v"]
        .median()
        .unstack("backend")
    )
    labels, backends = list(table.index), list(table.columns)
    fig = _figure(max(4.0, 1.1 * len(labels) * max(1, len(backends)) + 2), 3.2)
    ax = fig.subplots()
    width = 0.8 / len(backends)
    x = np.arange(len(labels))
    for k, backend in enumerate(backends):
        ax.bar(x + (k - (len(backends) - 1) / 2) * width, table[backend].to_numpy(), width,
               label=backend)  # fmt: skip
    ax.set_xticks(x, labels, rotation=20 if len(labels) > 4 else 0)
    ax.set_ylabel("sequence steps / s (B x T per second)")
    ax.set_title("training throughput, median over runs", fontsize=10)
    ax.legend(title="backend", fontsize=9)
    fig.savefig(path)
    return True


# ---------------------------------------------------------------- HTML

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


def _sweep_log(out: Path) -> pd.DataFrame | None:
    from .sweep import SWEEP_LOG

    path = out / SWEEP_LOG
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    keep = ["suite", "finished_at", "planned", "skipped", "ran", "failed", "retries", "executor",
            "wall_seconds", "train_seconds", "worker_busy_seconds", "utilisation",
            "first_start_seconds", "median_run_overhead_seconds"]  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame[[c for c in keep if c in frame.columns]]


def runs_table(d: pd.DataFrame) -> pd.DataFrame:
    cols = ["run_id", "task", "label", "seq_len", "clip", "seed", "status", "solved",
            "solved_step", "steps_run", "loss_ratio", "steps_per_second", "train_seconds",
            "grad_ratio_log10"]  # fmt: skip
    cols = [c for c in cols if c in d.columns]
    return d[cols].sort_values(["task", "label", "seq_len", "clip", "seed"]).reset_index(drop=True)


def write_report(out="results", html_path=None, title: str | None = None) -> Path:
    """Write the HTML report of the runs under ``out`` and its PNGs next to it; return its path."""
    from . import results

    out = Path(out)
    df = results.load(out)
    if df.empty:
        raise ConfigError(f"no runs in {out}/: run 'seqbench sweep SUITE --out {out}' first")
    path = Path(html_path) if html_path else out / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    d = labelled(df)
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
            [
                _img(drawn["loss"], "training loss vs steps")
                if "loss" in drawn
                else _note("no per-step histories (reservoir runs have none)"),
                _note(
                    "Training loss, smoothed; the dashed line is the task's memoryless "
                    "baseline, an x marks a diverged run."
                ),
            ],
        ),  # fmt: skip
        _section(
            "gradients",
            "Vanishing gradients: log10 ||dL/dh_t|| over t and training step",
            [
                _img(drawn["gradients"], "gradient norm heatmaps")
                if "gradients" in drawn
                else _note("no gradient profiles recorded"),
                _note(
                    "One run per model at the longest T (lowest seed); shared colour scale. "
                    "A dark left edge is a gradient that does not reach the early steps."
                ),
            ],
        ),  # fmt: skip
        _section(
            "success",
            "Success rate against T",
            [_img(drawn["success"], "solved rate vs T")] if "success" in drawn else [],
        ),
        _section(
            "speed",
            "Speed per backend",
            ([_img(drawn["speed"], "throughput per backend")] if "speed" in drawn else [])
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
    sections.append(
        _section(
            "runs",
            f"All runs ({len(runs)})",
            [
                f"<details{' open' if len(runs) <= 40 else ''}><summary>table</summary>",
                _table_html(runs, "runs"),
                "</details>",
            ],
        )  # fmt: skip
    )
    env = {c: ", ".join(sorted(map(str, df[c].dropna().unique()))) for c in
           ("cpu", "gpu", "numba_version", "seqbench_version", "git_commit")}  # fmt: skip
    title = title or f"seqbench report: {out}"
    head = (
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p>{len(df)} runs, {df['task'].nunique()} task(s), generated "
        f"{html.escape(results.utc_now())}. "
        + "; ".join(f"{k}: {html.escape(v)}" for k, v in env.items() if v)
        + "</p>"
    )
    doc = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + head + "\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )  # fmt: skip
    path.write_text(doc)
    return path


# ---------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--html", default=None, help="report file (default: OUT/report.html)")
    p.add_argument("--title", default=None, help="report title")


def main(args) -> int:
    path = write_report(args.out, args.html, args.title)
    pngs = sorted(p.name for p in path.parent.glob(f"{path.stem}-*.png"))
    print(f"wrote {path} and {len(pngs)} figures next to it ({', '.join(pngs)})")
    return 0


__all__ = [
    "summary_tables",
    "solved_table",
    "clipping_table",
    "pivot",
    "model_labels",
    "write_report",
]
