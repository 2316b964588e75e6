"""Progress of a sweep on stderr: a rich bar over runs and one line per finished run."""

from __future__ import annotations

from ..models import MODELS
from .executors import Event


class SweepProgress:
    """A rich progress bar over runs, and one line per finished run (on stderr)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self._progress = total, enabled, None

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True, soft_wrap=True),
            transient=True,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task("sweep", total=self.total, note="")
        self._failed = self._retried = 0
        return self

    def update(self, event: Event, rid: str) -> None:
        if self._progress is None:
            return
        cfg = event.config
        label = f"{rid}  {cfg.task} T={cfg.seq_len} {cfg.model}"
        # a fitted model (the reservoir) ignores clipping: its label says nothing of it
        clip = "" if "clip" in MODELS[cfg.model].ignores else f" clip={cfg.clip}"
        label += f"{'-bi' if cfg.bidirectional else ''}{clip} seed={cfg.seed}"
        console = self._progress.console
        if event.kind == "done":
            r = event.result
            ratio = (r["final_loss"] or float("nan")) / (r["baseline_loss"] or float("nan"))
            verdict = "solved" if r["solved"] else r["status"]
            console.print(f"{label}  {verdict}  loss/baseline {ratio:.3g}  "
                          f"{r['worker_seconds']:.1f} s")  # fmt: skip
            self._progress.advance(self._task)
        elif event.kind == "retry":
            self._retried += 1
            console.print(f"{label}  [yellow]{event.error}: retrying")
        else:
            self._failed += 1
            console.print(f"{label}  [red]failed: {event.error}")
            self._progress.advance(self._task)
        notes = [f"{self._failed} failed" if self._failed else "", f"{self._retried} retried"]
        self._progress.update(self._task, note="  ".join(n for n in notes if n and n[0] != "0"))

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
