"""What a person sees while a run trains and when it ends (rich)."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class TrainingProgress:
    """A progress bar with the live loss against the task's memoryless baseline (on a
    terminal's stderr), and one plain line per evaluation when stdout is not a terminal (a
    log file, a pipe, a batch job), so that a long run is never silent for minutes."""

    def __init__(self, cfg, enabled=True):
        self.cfg = cfg
        self.enabled = enabled and sys.stderr.isatty()
        self.lines = enabled and not sys.stdout.isatty()
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
        if self.lines and info.get("eval_step") == step:
            unit = loss_unit(self.cfg.task)
            print(evaluation_line(step, self.cfg.steps, loss, info, unit), flush=True)
        if self._progress is None:
            return
        ev = info.get("eval_loss", float("nan"))
        shown = "–" if info.get("eval_step") is None else f"{ev:.4f}"
        status = f"loss {loss:.4f}  eval {shown}  baseline {info['baseline']:.4f}"
        if info.get("solved"):
            status += "  [green]solved"
        self._progress.update(self._task, completed=step, status=status)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def evaluation_line(step, steps, loss, info, unit: str = "") -> str:
    """One evaluation as a plain line: step, training loss, eval loss (SE), baseline; with
    the task's loss unit where it declares one (a loss in nats shown in bits beside it)."""
    se = info.get("eval_loss_se")
    se = f" ± {se:.2g}" if se is not None and math.isfinite(se) else ""
    u = f" {unit}" if unit else ""
    ev, base = info["eval_loss"], info["baseline"]
    line = (
        f"step {step}/{steps}  loss {loss:.4f}{u}  eval loss {ev:.4f}{se}{u}  "
        f"baseline {base:.4f}{u}"
    )
    bits = _bits_unit(unit)
    if bits:
        line += f"  (eval {ev / math.log(2):.4f} vs baseline {base / math.log(2):.4f} {bits})"
    return line + ("  solved" if info.get("solved") else "")


def loss_unit(task: str) -> str:
    """The task's declared loss unit (char-lm: "nats/char"); "" where it declares none."""
    from .tasks import TASKS, _task_class

    try:
        return _task_class(task).loss_unit if task in TASKS else ""
    except ImportError:
        return ""


def _bits_unit(unit: str) -> str:
    """ "nats/char" -> "bits/char": a loss in nats is also shown in bits; "" otherwise."""
    return "bits/" + unit.partition("/")[2] if unit.startswith("nats/") else ""


def _fmt(v, spec=".4g"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def verdict_lines(r: dict) -> list[str]:
    """The end-of-run summary: solved or not, against the baseline, speed, gradient story."""
    fitted = _fitted(r["model"])
    how = (
        "ridge readout"
        if fitted
        else (
            f"{r['optimizer']} lr={r['lr']:g}, clip {r['clip']}, batch {r['batch_size']}, "
            f"at most {r['steps']} steps"
        )
    )
    layers = "" if r.get("num_layers") is None else f" x{r['num_layers']}"  # None: no layers
    head = (
        f"{r['task']} T={r['seq_len']}  {r['model']} H={r['hidden_size']}"
        f"{layers}{' bi' if r.get('bidirectional') else ''}  "
        f"({r['backend']}, {r['dtype']}, {how})"
    )
    return [head, _outcome(r), *(_fitted_lines(r) if fitted else _gradient_lines(r))]


def _fitted(model: str) -> bool:
    """Whether a run's model fits its readout in closed form (no gradient story to tell)."""
    from .models import MODELS

    kind = MODELS.get(model)
    return kind is not None and kind.fitted


def solved_rule(task: str) -> str | None:
    """The task's bar for "solved", in words (its ``solved_rule``); None for an unknown task."""
    from .tasks import TASKS, _task_class

    try:
        return _task_class(task).solved_rule if task in TASKS else None
    except ImportError:
        return None


def _outcome(r: dict) -> str:
    if r["status"] == "diverged":
        return f"DIVERGED at step {r['diverged_step']} (NaN/Inf in loss or gradients)"
    ratio = r["final_loss"] / r["baseline_loss"] if r["baseline_loss"] else float("nan")
    state = f"SOLVED at step {r['solved_step']}" if r["solved"] else "not solved"
    rule = solved_rule(r["task"])
    if rule:
        state += f" (solved = {rule})"
    se, n = r.get("eval_loss_se"), r.get("eval_sequences")
    spread = f" ± {_fmt(se, '.2g')} (SE over {n} sequences)" if n and se is not None else ""
    unit = loss_unit(r["task"])
    u = f" {unit}" if unit else ""
    line = (
        f"{state}: eval loss {_fmt(r['final_loss'])}{u}{spread} vs memoryless baseline "
        f"{_fmt(r['baseline_loss'])}{u} ({_fmt(ratio, '.3f')}x)"
    )
    metrics = r.get("metrics") or {}
    bits = _bits_unit(unit)
    if bits:  # the same two numbers in bits, and as perplexities (e^nats)
        ln2, loss, base = math.log(2), r["final_loss"], r["baseline_loss"]
        line += (
            f"; in bits {_fmt(loss / ln2)} vs {_fmt(base / ln2)} {bits}, "
            f"perplexity {_fmt(math.exp(loss))} vs {_fmt(math.exp(base))}"
        )
        metrics = {k: v for k, v in metrics.items() if k != "bpc"} if metrics else metrics
    if isinstance(metrics, dict) and metrics:
        line += "  " + "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
        if "nrmse" in metrics:
            line += "  (NRMSE = RMSE / std of the target)"
    return line


def _gradient_lines(r: dict) -> list[str]:
    speed = (
        f"{r['steps_run']} steps in {r['train_seconds']:.1f} s "
        f"({_fmt(r.get('steps_per_second'), '.1f')} steps/s excl. compile, "
        f"compile {_fmt(r.get('compile_seconds'), '.1f')} s)"
    )
    return [speed, *_probe_lines(r)]


def _probe_lines(r: dict) -> list[str]:
    """The recurrence's gradient probe and W_hh's spectrum, at init and at the end."""

    def change(name, spec, words):
        init, final = r.get(f"{name}_init"), r.get(f"{name}_final", r.get(name))
        if init is None:  # a record from before *_init existed
            return _fmt(final, spec)
        if words:
            return f"{_fmt(init, spec)} at init, {_fmt(final, spec)} at the end"
        return f"{_fmt(init, spec)} -> {_fmt(final, spec)}"

    ratio = change("grad_ratio_log10", ".2f", True)
    radius = change("spectral_radius", ".3g", False)
    sigma = change("max_singular_value", ".3g", False)
    clipped = 100 * (r.get("clip_fraction") or 0)
    lines = [
        "gradient probe log10 ||dL_T/dh_1||/||dL_T/dh_T|| (L_T: the loss at the last step; "
        f"below 0: the gradient vanishes going back in time): {ratio}",
        f"spectral radius W_hh {radius}, largest singular value {sigma}; "
        f"clipped {clipped:.0f}% of steps",
    ]
    for when in ("init", "final"):
        note = r.get(f"grad_probe_note_{when}")
        if isinstance(note, str) and note:
            lines.append(f"  probe at {'init' if when == 'init' else 'the end'}: {note}")
    return lines


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
