"""What a person sees while a run trains and when it ends (rich)."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class TrainingProgress:
    """A progress bar with the live loss against the task's memoryless baseline."""

    def __init__(self, cfg, enabled=True):
        self.cfg = cfg
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = None

    def __enter__(self):
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            label = f"{self.cfg.task} {self.cfg.model}"
            self._task = self._progress.add_task(label, total=self.cfg.steps, status="compiling")
        return self

    def __call__(self, step, loss, info):
        if self._progress is None:
            return
        ev = info.get("eval_loss", float("nan"))
        status = f"loss {loss:.4f}  eval {ev:.4f}  baseline {info['baseline']:.4f}"
        if info.get("solved"):
            status += "  [green]solved"
        self._progress.update(self._task, completed=step, status=status)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def _fmt(v, spec=".4g"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def verdict_lines(r: dict) -> list[str]:
    """The end-of-run summary: solved or not, against the baseline, speed, gradient story."""
    fitted = _fitted(r["model"])
    how = "ridge readout" if fitted else f"{r['optimizer']} lr={r['lr']:g}, clip {r['clip']}"
    head = (
        f"{r['task']} T={r['seq_len']}  {r['model']} H={r['hidden_size']} "
        f"x{r['num_layers']}{' bi' if r['bidirectional'] else ''}  "
        f"({r['backend']}, {r['dtype']}, {how})"
    )
    return [head, _outcome(r), *(_fitted_lines(r) if fitted else _gradient_lines(r))]


def _fitted(model: str) -> bool:
    """Whether a run's model fits its readout in closed form (no gradient story to tell)."""
    from .models import MODELS

    kind = MODELS.get(model)
    return kind is not None and kind.fitted


def _outcome(r: dict) -> str:
    if r["status"] == "diverged":
        return f"DIVERGED at step {r['diverged_step']} (NaN/Inf in loss or gradients)"
    ratio = r["final_loss"] / r["baseline_loss"] if r["baseline_loss"] else float("nan")
    state = f"SOLVED at step {r['solved_step']}" if r["solved"] else "not solved"
    line = (
        f"{state}: eval loss {_fmt(r['final_loss'])} vs memoryless baseline "
        f"{_fmt(r['baseline_loss'])} ({_fmt(ratio, '.3f')}x)"
    )
    metrics = r.get("metrics") or {}
    if isinstance(metrics, dict) and metrics:
        line += "  " + "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
        if "nrmse" in metrics:
            line += "  (NRMSE = RMSE / std of the target)"
    return line


def _gradient_lines(r: dict) -> list[str]:
    speed = (
        f"{r['steps_run']} steps in {r['train_seconds']:.1f} s "
        f"({_fmt(r.get('steps_per_second'), '.1f')} steps/s, "
        f"compile {_fmt(r.get('compile_seconds'), '.1f')} s)"
    )
    grad = (
        f"gradient: log10 ||dL/dh_1||/||dL/dh_T|| = {_fmt(r.get('grad_ratio_log10'), '.2f')}, "
        f"spectral radius W_hh {_fmt(r.get('spectral_radius'), '.3f')}, "
        f"clipped {100 * (r.get('clip_fraction') or 0):.0f}% of steps"
    )
    return [speed, grad]


def _fitted_lines(r: dict) -> list[str]:
    options = r.get("options") or {}
    return [
        f"reservoir driven and readout fitted in {r['train_seconds']:.1f} s "
        f"({_fmt(r.get('sequence_steps_per_second'), '.3g')} sequence-steps/s, "
        f"compile {_fmt(r.get('compile_seconds'), '.1f')} s)",
        f"no backprop: spectral radius W_hh {_fmt(r.get('spectral_radius'), '.3f')}, "
        f"leak {_fmt(options.get('leak', 1.0), '.3g')}",
    ]


def print_verdict(record: dict, out: str) -> None:
    lines = verdict_lines(record)
    print("\n".join(lines))
    print(f"saved run {record['run_id']} to {out}/  (compare: seqbench results --out {out})")
