"""Sweeps: a suite file -> run configs -> runs in parallel, resumable, locally or on Dask.

A suite is a TOML file whose keys are RunConfig field names (= the results table's columns):

    name = "long-dependency"            # optional; description likewise
    [defaults]                          # every run starts from these
    task = "adding"
    hidden_size = 64
    [grid]                              # lists, crossed: every combination is a run
    seq_len = [10, 50]
    seed = [0, 1]
    [[runs]]                            # optional variants, each crossed with [grid]
    model = ["elman", "lstm"]           # a list inside a run is swept for that run only
    [[runs]]
    model = "elman"
    model_options = {nonlinearity = "relu"}
    init = "identity"
    [[runs]]
    model = "esn"
    seed = 0                            # a key a run sets replaces the grid's list

Without [[runs]] the suite is [defaults] x [grid]. Configs with the same run id (the hash of
the config columns, seqbench.results.run_id) are run once. Every mistake is a ConfigError
naming the file, the line and the key.

Running: configs whose run id is already under ``out`` are skipped; the rest go to a pool of
worker processes (spawned, persistent, one thread pool each), or to a Dask cluster. A run is
done when its runs file exists (seqbench.results writes it atomically, last), so a sweep
killed or interrupted at any moment resumes where it stopped with no finished run redone and
nothing half-written counted. A worker that dies takes its runs back to the queue, up to
``retries`` times; a run that raises is reported and not retried (it would raise again).

Modules: suite (parse and expand; source, checks), plan (what is left, longest first),
workers (what runs in a worker), executors (process pool, Dask), orchestrate (the sweep and
its timing log), progress (the display) and cli (``seqbench sweep``).
"""

from .cli import add_arguments, main
from .executors import Event, install_files, local_dask_client, run_dask, run_local
from .orchestrate import SweepReport, sweep, timing_summary
from .plan import Plan, estimated_cost, plan
from .suite import Suite, load_suite, resolve_suite_path
from .workers import THREAD_VARIABLES, limit_threads, run_in_worker, run_on_dask

__all__ = [
    "THREAD_VARIABLES",
    "Event",
    "Plan",
    "Suite",
    "SweepReport",
    "add_arguments",
    "estimated_cost",
    "install_files",
    "limit_threads",
    "load_suite",
    "local_dask_client",
    "main",
    "plan",
    "resolve_suite_path",
    "run_dask",
    "run_in_worker",
    "run_local",
    "run_on_dask",
    "sweep",
    "timing_summary",
]
