"""Drawing helpers shared by the reproductions' figures (matplotlib, Agg, no global state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLOURS = {"lstm": "tab:blue", "gru": "tab:green", "elman": "tab:red"}
STYLES = ("-", "--", ":", "-.")  # one per learning rate of a model


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, out, name: str) -> Path:
    path = Path(out) / name
    fig.savefig(path)
    return path


def labels(ax, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Axis labels, an optional title, and the small legend every figure here uses."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.legend(fontsize=7)


def eval_curve(history: pd.DataFrame, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, eval loss) of one run: the evaluations the training loop recorded."""
    if history.empty or "eval_loss" not in history.columns:
        return np.array([]), np.array([])
    h = history[(history["run_id"] == run_id) & history["eval_loss"].notna()]
    return (h["step"].to_numpy(dtype=float), h["eval_loss"].to_numpy(dtype=float))


def curves_by_model(ax, runs: pd.DataFrame, history: pd.DataFrame, scale=None) -> None:
    """One thin line per seed, a colour per model and a line style per lr, y divided by
    ``scale(run)`` when given."""
    labelled = set()
    rates = {m: sorted(g["lr"].unique()) for m, g in runs.groupby("model")}
    for r in runs.sort_values(["model", "seed"]).itertuples(index=False):
        steps, loss = eval_curve(history, r.run_id)
        if steps.size == 0:
            continue
        if scale is not None:
            loss = loss / scale(r)
        label = f"{r.model} (lr {r.lr:g})"
        style = STYLES[rates[r.model].index(r.lr) % len(STYLES)]
        ax.plot(steps, loss, style, color=COLOURS.get(r.model), lw=1, alpha=0.8,
                label=None if label in labelled else label)  # fmt: skip
        labelled.add(label)


def curves_per_t(runs, history, task, ylabel, baseline, baseline_label, scale=None, log=False):
    """Eval curves against steps (``curves_by_model``), one panel per T, the baseline dashed."""
    ts = sorted(int(t) for t in runs["seq_len"].unique())
    fig = new_figure(3.6 * max(len(ts), 1), 3.4)
    for ax, t in zip(panels(fig, len(ts)), ts, strict=False):
        curves_by_model(ax, runs[runs["seq_len"] == t], history, scale=scale)
        ax.axhline(baseline, color="k", ls="--", lw=1, label=baseline_label)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{task}, T={t}")
        labels(ax, "training step", ylabel)
    return fig


def panels(fig, count: int):
    axes = fig.subplots(1, max(count, 1), squeeze=False)[0]
    return list(axes)
