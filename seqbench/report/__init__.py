"""Comparison tables and an HTML report with plots, from a results directory.

Tables (``tables``, reused by ``seqbench sweep``'s summary): per task, model x T of runs solved
over seeds, final loss / baseline as mean [95% t interval] over seeds, median steps to solve
and median steps per second (and the best lr per cell when lrs vary); and, when a sweep varies
clipping, divergence and solve rates per clipping setting and T. Only seeds are pooled unless
``--pool COLUMN`` says otherwise.

The report (``seqbench report``, ``html``) is one HTML file, written all or nothing, with the
tables inline and PNG figures (``plots``) written next to it: loss against the memoryless
baseline, heatmaps of log10 ||dL/dh_t|| over t and training step (the vanishing-gradient
picture), success rate and final loss / baseline against T, and speed per backend.
"""

from .cli import add_arguments, main
from .html import write_report
from .tables import clipping_table, model_labels, pivot, solved_table, summary_tables

__all__ = [
    "summary_tables",
    "solved_table",
    "clipping_table",
    "pivot",
    "model_labels",
    "write_report",
    "add_arguments",
    "main",
]
