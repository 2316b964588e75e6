"""The report's figures, each a function of the runs table writing one PNG.

matplotlib is imported only here, only when drawing, with no global backend state
(Figure + its Agg canvas).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

MAX_HEATMAPS = 6
MAX_LOSS_ROWS = 8
STYLES = ("-", "--", ":", "-.")


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


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_success(d: pd.DataFrame, path: Path, pool=()) -> bool:
    """Per task against T: the fraction of runs solved (top) and the mean final loss over the
    baseline with its 95% t interval (bottom, which still tells the models apart where none
    solves); one line per row of the report's tables (model, and clipping or whatever else
    varies), each with its own marker and nudged sideways so that equal lines stay visible."""
    d = d[d["status"].notna()]
    tasks = sorted(d["task"].unique())
    if not tasks:
        return False
    colours = _colours(d["label"])
    fig = _figure(4.4 * len(tasks) + 2.4, 5.6)
    axes = fig.subplots(2, len(tasks), squeeze=False, sharex="col")
    for col, task in enumerate(tasks):
        _success_panels(axes[0][col], axes[1][col], d[d["task"] == task], colours, list(pool))
        axes[0][col].set_title(task, fontsize=10)
    axes[0][0].set_ylabel("fraction of runs solved")
    axes[1][0].set_ylabel("final loss / baseline (mean)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=9)
    fig.savefig(path)
    return True


def _success_panels(top, bottom, sel: pd.DataFrame, colours: dict, pool: list) -> None:
    import numpy as np

    from ..results import by_seed
    from .tables import choose_best, row_keys

    sel, best = choose_best(sel, pool, "lr")
    rows = row_keys(sel, pool=[*pool, best] if best else pool)
    stats = by_seed(sel, [*rows, "seq_len"])
    series = list(stats.groupby(level=list(range(len(rows))), sort=True))
    ts = sorted(sel["seq_len"].dropna().astype(int).unique())
    log_x = len(ts) > 1 and ts[-1] / max(ts[0], 1) >= 8
    for k, (key, part) in enumerate(series):
        key = key if isinstance(key, tuple) else (key,)
        nudge = (k - (len(series) - 1) / 2) * 0.025  # of a step between Ts (log or linear)
        t = part.index.get_level_values("seq_len").to_numpy(dtype=float)
        x = t * 10 ** (nudge * _step(ts, log=True)) if log_x else t + nudge * _step(ts)
        extra = ", ".join(f"{c} {v}" for c, v in zip(rows[1:], key[1:], strict=True))
        style = dict(marker=MARKERS[k % len(MARKERS)], color=colours[key[0]], ms=6, alpha=0.9,
                     ls=STYLES[k // len(MARKERS) % len(STYLES)],
                     label=str(key[0]) + (f", {extra}" if extra else ""))  # fmt: skip
        top.plot(x, (part["solved"] / part["runs"]).to_numpy(dtype=float), **style)
        mean = part["loss_ratio_mean"].to_numpy(dtype=float)
        low = part["loss_ratio_low"].to_numpy(dtype=float)  # NaN for one seed: no bar
        low = np.where(np.isnan(low), mean, np.fmax(low, mean / 100))  # a log axis ends at 0
        high = part["loss_ratio_high"].to_numpy(dtype=float)
        high = np.where(np.isnan(high), mean, high)
        err = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)
        bottom.errorbar(x, mean, yerr=err, capsize=2, lw=1, **style)
    top.set_ylim(-0.05, 1.05)
    bottom.axhline(1.0, color="k", ls="--", lw=1)
    bottom.set_yscale("log")
    _plain_log_ticks(bottom.yaxis)
    if log_x:
        bottom.set_xscale("log")
        bottom.minorticks_off()
    bottom.set_xticks(ts, [str(t) for t in ts])
    bottom.set_xlabel("T")


def _step(ts: list, log: bool = False) -> float:
    """The smallest gap between neighbouring Ts (in log10 units on a log axis), or 1."""
    import numpy as np

    v = np.log10(ts) if log else np.asarray(ts, dtype=float)
    gaps = np.diff(v)
    return float(gaps.min()) if len(gaps) else 1.0


def _plain_log_ticks(axis) -> None:
    """Tick labels 0.3, 1, 2 on a log axis instead of 3x10^-1; minor ones at 2, 3 and 5 only."""
    import math

    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        low, high = axis.get_view_interval()
        if low <= 0 or high / low > 30:  # over 1.5 decades the minor labels would collide
            return ""
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
