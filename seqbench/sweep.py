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
    clip = "none"

Without [[runs]] the suite is [defaults] x [grid]. Configs with the same run id (the hash of
the config columns, seqbench.results.run_id) are run once. Every mistake is a ConfigError
naming the file, the line and the key.

Running: configs whose run id is already under ``out`` are skipped; the rest go to a pool of
worker processes (spawned, persistent, one thread pool each), or to a Dask cluster. A run is
done when its runs file exists (seqbench.results writes it atomically, last), so a sweep
killed or interrupted at any moment resumes where it stopped with no finished run redone and
nothing half-written counted. A worker that dies takes its runs back to the queue, up to
``retries`` times; a run that raises is reported and not retried (it would raise again).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError

SECTIONS = ("defaults", "grid", "runs")
TOP_LEVEL = ("name", "description", *SECTIONS)
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "SEQBENCH_THREADS",  # the numba backend's own pool (and the ESN kernels' spin barrier)
)
SWEEP_LOG = "sweeps.jsonl"  # one JSON line per sweep invocation, next to runs/


# ---------------------------------------------------------------- suite files


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    configs: tuple  # validated RunConfigs, unique run ids, in file order
    duplicates: int = 0  # configs dropped because an earlier one had the same run id

    def run_ids(self) -> list[str]:
        from .results import run_id

        return [run_id(c.identity()) for c in self.configs]


def resolve_suite_path(name) -> Path:
    """A path as given, or a bare name looked up as suites/NAME.toml (here, then the repo)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        for root in (Path("suites"), Path(__file__).resolve().parent.parent / "suites"):
            candidate = root / f"{name}.toml"
            if candidate.is_file():
                return candidate
    raise ConfigError(f"no suite file {name}")


def load_suite(path) -> Suite:
    """Parse, check and expand a suite file; every mistake is one ConfigError 'file:line: ...'."""
    path = resolve_suite_path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read suite {path}: {e}") from e
    source = _Source(path, text)
    doc = source.parse()
    _check_document(source, doc)
    configs, origins, duplicates = [], {}, 0
    from .results import run_id

    for block, entries in _blocks(doc):
        for entry in entries:
            cfg = _config(source, block, entry)
            rid = run_id(cfg.identity())
            if rid in origins:
                duplicates += 1
                continue
            origins[rid] = block
            configs.append(cfg)
    _check_models(source, doc, configs, origins)
    return Suite(
        path=path,
        name=str(doc.get("name", path.stem)),
        description=str(doc.get("description", "")),
        configs=tuple(configs),
        duplicates=duplicates,
    )


class _Source:
    """The suite's text, to say on which line a key stands (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, path: Path, text: str):
        self.path, self.text, self.lines = path, text, text.splitlines()
        # (section or None, [[runs]] index, first line, last line); lines count from 1
        self.spans, section, index, first, runs = [], None, 0, 1, -1
        for number, line in enumerate(self.lines, 1):
            m = self._HEADER.match(line)
            if not m:
                continue
            self.spans.append((section, index, first, number - 1))
            name = m.group(2).split(".")[0].strip().strip("\"'")
            runs += m.group(1) == "[[" and name == "runs"
            section, index, first = name, (runs if name == "runs" else 0), number
        self.spans.append((section, index, first, len(self.lines)))

    def parse(self) -> dict:
        import tomllib

        try:
            return tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = re.search(r"\(at line (\d+), column \d+\)", msg)
            line = int(m.group(1)) if m else max(len(self.lines), 1)
            msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
            raise self.error(line, f"TOML syntax error: {msg}") from None

    def error(self, line: int, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{line}: {message}")

    def line_of(self, section, key=None, index=0) -> int:
        """The line where ``key`` is set in ``section`` (None: top level), else its header's."""
        spans = [s for s in self.spans if s[0] == section and s[1] == index]
        if key is not None:
            pattern = re.compile(rf"(^|[\s{{,.\[])[\"']?{re.escape(str(key))}[\"']?\s*[=.\]]")
            for _, _, first, last in spans:
                for number in range(first, last + 1):
                    if pattern.search(self.lines[number - 1].split("#")[0]):
                        return number
        for _, _, first, _ in spans:
            if section is None or self._HEADER.match(self.lines[first - 1]):
                return first
        return 1

    def where(self, block: tuple) -> str:
        section, index = block
        return f"[[runs]] #{index + 1}" if section == "runs" else f"[{section}]"


def _field_types() -> dict:
    """RunConfig field -> the TOML types it takes (from the dataclass's annotations)."""
    from .config import RunConfig

    kinds = {}
    for f in fields(RunConfig):
        text = str(f.type)
        if text.startswith("dict"):
            kinds[f.name] = "table"
        elif text.startswith("bool"):
            kinds[f.name] = "bool"
        elif text.startswith("int"):
            kinds[f.name] = "int"
        elif text.startswith("float"):
            kinds[f.name] = "number"
        else:
            kinds[f.name] = "string"
    return kinds


_TYPE_WORDS = {
    "table": "an inline table like {key = value}",
    "bool": "true or false",
    "int": "an integer",
    "number": "a number",
    "string": "a string",
}


def _type_ok(kind: str, value) -> bool:
    if kind == "table":
        return isinstance(value, dict)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _describe(value) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kind.update({list: "a list", dict: "a table"})
    return f"{json.dumps(value, default=str)} ({kind.get(type(value), type(value).__name__)})"


def _check_document(source: _Source, doc: dict) -> None:
    for key, value in doc.items():
        if key not in TOP_LEVEL:
            raise source.error(
                source.line_of(None, key) if key not in SECTIONS else 1,
                f"unknown top-level key {key!r}; a suite has [defaults], [grid], [[runs]] "
                "and optionally name and description",
            )
        if key in ("name", "description") and not isinstance(value, str):
            raise source.error(source.line_of(None, key), f"{key} must be a string")
    if "defaults" in doc and not isinstance(doc["defaults"], dict):
        raise source.error(source.line_of(None, "defaults"), "defaults must be a table")
    if "grid" in doc:
        if not isinstance(doc["grid"], dict):
            raise source.error(source.line_of(None, "grid"), "grid must be a table")
        if not doc["grid"]:
            raise source.error(
                source.line_of("grid"),
                "[grid] is empty: give it lists to sweep (e.g. seed = [0, 1]) or leave it out",
            )
    runs = doc.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise source.error(source.line_of(None, "runs"), "runs must be written as [[runs]] tables")
    if "grid" not in doc and not runs:
        raise source.error(1, "the suite sweeps nothing: add a [grid] table or [[runs]] entries")
    _check_keys(source, doc)


def _check_keys(source: _Source, doc: dict) -> None:
    kinds = _field_types()
    known = ", ".join(kinds)
    tables = [(("defaults", 0), doc.get("defaults", {})), (("grid", 0), doc.get("grid", {}))]
    tables += [(("runs", i), run) for i, run in enumerate(doc.get("runs", []))]
    for block, table in tables:
        section, index = block
        for key, value in table.items():
            line = source.line_of(section, key, index)
            where = source.where(block)
            if key not in kinds:
                raise source.error(line, f"unknown key {key!r} in {where}; known: {known}")
            if section == "grid" and not isinstance(value, list):
                raise source.error(
                    line, f"{key!r} in [grid] must be a list of values, got {_describe(value)}"
                )
            values = value if isinstance(value, list) and section != "defaults" else [value]
            if not values:
                raise source.error(line, f"{key!r} in {where} is an empty list: nothing to sweep")
            for v in values:
                if not _type_ok(kinds[key], v):
                    raise source.error(
                        line,
                        f"{key!r} in {where} must be {_TYPE_WORDS[kinds[key]]}, got {_describe(v)}",
                    )
                _check_value(source, line, where, key, v)


def _check_value(source, line, where, key, value) -> None:
    """One value on its own, against RunConfig's rules, so the error can name its line."""
    from .config import RunConfig

    if key == "model_options":
        return  # depends on the model: checked per model in _check_models
    try:
        RunConfig(**{key: value}).validated()
    except ConfigError as e:
        raise source.error(line, f"{key!r} in {where}: {e}") from None
    except ImportError as e:
        raise source.error(
            line, f"{key!r} in {where}: {value!r} is not available here ({e})"
        ) from None


def _blocks(doc: dict):
    """(block, entries): each entry a dict of scalars (the grid crossed, lists expanded)."""
    defaults, grid = doc.get("defaults", {}), doc.get("grid", {})
    runs = doc.get("runs") or [None]
    for i, run in enumerate(runs):
        block = ("runs", i) if run is not None else ("grid", 0)
        axes = {k: v for k, v in grid.items() if run is None or k not in run}
        axes.update({k: v if isinstance(v, list) else [v] for k, v in (run or {}).items()})
        names = list(axes)
        entries = [
            {**defaults, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*(axes[n] for n in names))
        ]
        yield block, entries


def _config(source: _Source, block: tuple, entry: dict):
    from .config import RunConfig

    try:
        return RunConfig.from_dict(entry)
    except ConfigError as e:
        summary = ", ".join(f"{k}={entry[k]}" for k in ("task", "model", "seq_len") if k in entry)
        line = source.line_of(block[0], None, block[1])
        raise source.error(line, f"{source.where(block)} ({summary}): {e}") from None


def _check_models(source: _Source, doc: dict, configs, origins: dict) -> None:
    """Build each distinct model once at a tiny size: bad model_options fail here, not mid-sweep."""
    from .models import build_model
    from .results import run_id

    checked = set()
    for cfg in configs:
        opts = {"init": cfg.init, **cfg.model_options} if cfg.model != "esn" else cfg.model_options
        key = (cfg.model, cfg.num_layers, cfg.bidirectional, json.dumps(opts, sort_keys=True))
        if key in checked:
            continue
        checked.add(key)
        try:
            build_model(
                cfg.model,
                1,
                4,
                num_layers=cfg.num_layers,
                bidirectional=cfg.bidirectional,
                dtype=cfg.dtype,
                backend="numpy",
                seed=0,
                **opts,
            )
        except (ConfigError, ImportError, TypeError) as e:
            block = origins[run_id(cfg.identity())]
            line = _options_line(source, doc, block)
            where = source.where(block)
            raise source.error(line, f"model {cfg.model!r} in {where}: {e}") from None


def _options_line(source: _Source, doc: dict, block: tuple) -> int:
    """model_options' line in the block, else in [defaults], else the block's header."""
    section, index = block
    table = doc["runs"][index] if section == "runs" else doc.get(section, {})
    if "model_options" in table:
        return source.line_of(section, "model_options", index)
    if section == "runs" and "model_options" in doc.get("grid", {}):
        return source.line_of("grid", "model_options")
    if "model_options" in doc.get("defaults", {}):
        return source.line_of("defaults", "model_options")
    return source.line_of(section, None, index)


# ---------------------------------------------------------------- planning


@dataclass
class Plan:
    suite: Suite
    out: Path
    todo: list  # RunConfigs still to run, most expensive first
    done: list  # run ids already under out


def plan(suite: Suite, out) -> Plan:
    from .results import completed_run_ids, run_id

    finished = completed_run_ids(out) if Path(out).is_dir() else set()
    todo, done = [], []
    for cfg in suite.configs:
        rid = run_id(cfg.identity())
        (done.append(rid) if rid in finished else todo.append(cfg))
    # Longest first: the pool's last runs are its short ones, so no core waits on a long tail.
    todo.sort(key=estimated_cost, reverse=True)
    return Plan(suite, Path(out), todo, done)


GATES = {"elman": 1, "jordan": 1, "lstm": 4, "gru": 3, "esn": 1}


def estimated_cost(cfg) -> float:
    """Multiply-adds of a full run, roughly: steps x batch x T x gates x H^2 x layers x dirs."""
    h = cfg.hidden_size
    gates = GATES.get(cfg.model, 2)
    return float(cfg.steps * cfg.batch_size * (cfg.seq_len or 100) * gates * h * h) * (
        cfg.num_layers * (2 if cfg.bidirectional else 1)
    )


# ---------------------------------------------------------------- workers


def limit_threads(threads: int) -> None:
    """Pin this process's thread pools (BLAS, OpenMP, numba) to ``threads``.

    Environment variables cover the libraries not loaded yet (scipy's BLAS, numba);
    threadpoolctl and numba.set_num_threads the ones already loaded.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(threads)
    import sys

    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "seqbench.backends.cpu_runtime" in sys.modules:
        from .backends import cpu_runtime

        cpu_runtime.set_num_threads(threads)


def _init_pool_worker(threads: int, parent: int) -> None:
    """Runs once in each spawned worker, before its first run."""
    import signal

    # Ctrl-C is the parent's to handle: it stops the workers itself, without tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    limit_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the sweep process dies, so a killed sweep leaves no orphan
    finishing (and writing) a run that the resumed sweep is also running."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_in_worker(cfg, out) -> dict:
    """One run, in a pool worker: train, write the run's files under ``out``, report timings."""
    from .train import run_and_save

    started, t0 = time.time(), time.perf_counter()
    record = run_and_save(cfg, out)
    return _outcome(record, started, time.perf_counter() - t0)


def run_on_dask(cfg) -> dict:
    """One run, in a Dask task: write to a private temp dir and return the files' bytes.

    The client installs them under its ``out``, so workers need no shared filesystem.
    """
    import tempfile

    from .results import HISTORY, PROFILES, RUNS
    from .train import run_and_save

    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        nthreads = 1
    import numba

    per_task = max(1, min((os.cpu_count() or 1) // nthreads, numba.get_num_threads()))
    numba.set_num_threads(per_task)
    from .backends import cpu_runtime

    cpu_runtime.set_num_threads(per_task)  # concurrent tasks must not share out the same cores
    started, t0 = time.time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqbench-run-") as tmp:
        record = run_and_save(cfg, tmp)
        files = {}
        for sub in (HISTORY, PROFILES, RUNS):
            path = Path(tmp, sub, f"{record['run_id']}.parquet")
            if path.is_file():
                files[sub] = path.read_bytes()
    result = _outcome(record, started, time.perf_counter() - t0)
    result["files"] = files
    return result


def _outcome(record: dict, started: float, seconds: float) -> dict:
    keep = ("run_id", "task", "model", "seq_len", "clip", "seed", "status", "solved")
    keep += ("solved_step", "final_loss", "baseline_loss", "train_seconds", "compile_seconds")
    out = {k: record.get(k) for k in keep}
    out.update(started=started, ended=time.time(), worker_seconds=seconds, pid=os.getpid())
    return out


def install_files(out, run_id: str, files: dict) -> None:
    """Write a run's files (name -> bytes) under ``out``: temp + rename, the runs file last."""
    import tempfile

    from .results import RUNS, check_writable

    out = check_writable(out)
    order = sorted(files, key=lambda sub: sub == RUNS)
    for sub in order:
        final = out / sub / f"{run_id}.parquet"
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{run_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(files[sub])
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# ---------------------------------------------------------------- executors


@dataclass
class Event:
    kind: str  # "done", "retry" or "failed"
    config: object
    result: dict | None = None  # from the worker ("done")
    error: str | None = None  # "retry" / "failed"
    submitted: float = 0.0
    received: float = field(default_factory=time.time)


def run_local(todo, out, workers: int, threads: int, retries: int, on_event, worker=None):
    """Run ``todo`` on a pool of ``workers`` spawned processes; call ``on_event`` per outcome.

    At most ``workers`` runs are in flight, so when a worker dies the runs that were running
    are exactly the in-flight ones: each goes back to the queue (a bystander of the crash
    included), at most ``retries`` times. ``worker`` replaces run_in_worker (tests).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    worker = worker or run_in_worker
    pending, attempts = deque(todo), {}
    context = multiprocessing.get_context("spawn")
    while pending:
        executor = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_pool_worker,
            initargs=(threads, os.getpid()),
        )  # fmt: skip
        inflight, broken = {}, False
        try:
            while (pending and not broken) or inflight:
                while pending and not broken and len(inflight) < workers:
                    cfg = pending.popleft()
                    inflight[executor.submit(worker, cfg, str(out))] = (cfg, time.time())
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in finished:
                    cfg, submitted = inflight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as e:
                        broken = True
                        _lost(cfg, submitted, e, attempts, retries, pending, on_event)
                    except Exception as e:  # the run itself raised: deterministic, no retry
                        on_event(Event("failed", cfg, error=_error_text(e), submitted=submitted))
                    else:
                        on_event(Event("done", cfg, result=result, submitted=submitted))
        except BaseException:
            _stop_workers(executor)
            raise
        executor.shutdown(wait=True)


def _lost(cfg, submitted, error, attempts, retries, pending, on_event):
    from .results import run_id

    rid = run_id(cfg.identity())
    attempts[rid] = attempts.get(rid, 0) + 1
    reason = f"worker died ({error.__class__.__name__})"
    if attempts[rid] <= retries:
        pending.appendleft(cfg)
        on_event(Event("retry", cfg, error=reason, submitted=submitted))
    else:
        on_event(Event("failed", cfg, error=f"{reason} {attempts[rid]} times", submitted=submitted))


def _stop_workers(executor) -> None:
    """Kill the pool's processes now (Ctrl-C, or an error in the sweep itself)."""
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for p in processes:
        p.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout=5)


def _error_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def run_dask(todo, out, client, retries: int, on_event):
    """Run ``todo`` as Dask tasks on ``client``'s cluster; files come back to ``out``.

    A task whose worker dies is rescheduled by the scheduler itself (its
    ``distributed.scheduler.allowed-failures``), then fails with KilledWorker: reported,
    not retried again here.
    """
    from distributed import as_completed

    from .results import run_id

    futures = {}
    for rank, cfg in enumerate(todo):
        key = f"seqbench-run-{run_id(cfg.identity())}"
        future = client.submit(run_on_dask, cfg, key=key, pure=False, priority=-rank)
        futures[future] = (cfg, time.time())
    try:
        for future in as_completed(list(futures)):
            cfg, submitted = futures.pop(future)
            try:
                result = future.result()
            except Exception as e:
                on_event(Event("failed", cfg, error=_error_text(e), submitted=submitted))
                continue
            t0 = time.perf_counter()
            install_files(out, result["run_id"], result.pop("files"))
            result["install_seconds"] = time.perf_counter() - t0
            on_event(Event("done", cfg, result=result, submitted=submitted))
    finally:
        for future in futures:
            future.cancel()


def _dask_client(scheduler, workers: int, threads: int, retries: int):
    """(client, cluster): connected to ``scheduler``, or to a new LocalCluster (cluster set)."""
    from distributed import Client

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as e:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    return local_dask_client(workers, threads, retries)


def local_dask_client(workers: int, threads: int, retries: int):
    """A LocalCluster of ``workers`` single-threaded processes, and its client."""
    import dask
    from distributed import Client, LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.update({name: str(threads) for name in THREAD_VARIABLES})
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": retries,
            "distributed.nanny.pre-spawn-environ": environ,
        }
    ):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        return Client(cluster), cluster


# ---------------------------------------------------------------- the sweep


@dataclass
class SweepReport:
    planned: int
    skipped: int
    finished: list = field(default_factory=list)  # worker result dicts
    failed: list = field(default_factory=list)  # (run id, config, error)
    retries: int = 0
    wall_seconds: float = 0.0
    timing: dict = field(default_factory=dict)


def sweep(
    suite,
    out,
    *,
    workers: int | None = None,
    threads: int | None = None,
    scheduler: str | None = None,
    dask: bool = False,
    retries: int = 2,
    progress: bool = True,
    client=None,
    worker=None,
) -> SweepReport:
    """Run every config of ``suite`` not yet under ``out``; see the module docstring.

    Local processes by default; Dask with ``dask`` (a LocalCluster of ``workers``),
    ``scheduler`` (an address) or ``client`` (yours, left open). ``worker`` replaces
    run_in_worker in the local pool (tests).
    """
    from .results import check_writable, run_id

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    workers = workers or os.cpu_count() or 1
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    if workers < 1 or threads < 1 or retries < 0:
        raise ConfigError("workers and threads must be >= 1 and retries >= 0")
    check_writable(out)
    p = plan(suite, out)
    report = SweepReport(planned=len(suite.configs), skipped=len(p.done))
    if not p.todo:
        return report
    view = _SweepProgress(len(p.todo), enabled=progress)

    def on_event(event: Event) -> None:
        rid = run_id(event.config.identity())
        if event.kind == "done":
            report.finished.append({**event.result, "submitted": event.submitted,
                                    "received": event.received})  # fmt: skip
        elif event.kind == "retry":
            report.retries += 1
        else:
            report.failed.append((rid, event.config, event.error))
        view.update(event, rid)

    t0 = time.perf_counter()
    started = time.time()
    with view:
        if client is not None:
            executor = f"dask {client.scheduler.address}"
            workers = sum(client.nthreads().values()) or workers
            run_dask(p.todo, out, client, retries, on_event)
        elif scheduler or dask:
            executor = f"dask {scheduler or f'LocalCluster({workers})'}"
            client, cluster = _dask_client(scheduler, workers, threads, retries)
            try:
                workers = sum(client.nthreads().values()) or workers
                run_dask(p.todo, out, client, retries, on_event)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        else:
            executor = f"processes({workers})"
            run_local(p.todo, out, workers, threads, retries, on_event, worker=worker)
    report.wall_seconds = time.perf_counter() - t0
    report.timing = timing_summary(report, started, workers, executor)
    _log_sweep(out, suite, report)
    return report


def timing_summary(report: SweepReport, started: float, workers: int, executor: str) -> dict:
    """Where the sweep's wall time went: training, per-run overhead, dispatch, idle workers."""
    import statistics

    rows = report.finished
    if not rows:
        return {"executor": executor, "workers": workers}

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    busy = sum(r["worker_seconds"] for r in rows)
    train = sum(r["train_seconds"] or 0.0 for r in rows)
    compile_ = sum(r["compile_seconds"] or 0.0 for r in rows)
    return {
        "executor": executor,
        "workers": workers,
        "runs": len(rows),
        "wall_seconds": report.wall_seconds,
        "worker_busy_seconds": busy,
        "train_seconds": train,  # the training loops, first step's compile/cache load included
        "compile_seconds": compile_,
        "utilisation": busy / (report.wall_seconds * workers) if report.wall_seconds else None,
        "first_start_seconds": min(r["started"] for r in rows) - started,  # pool start-up
        "median_run_overhead_seconds": median(
            r["worker_seconds"] - (r["train_seconds"] or 0.0) for r in rows
        ),  # in the worker, outside the loop: build, final eval, write (and ship, on Dask)
        # submitted -> started in the worker: the pool submits a run only when a worker is
        # free, so this is its dispatch cost; Dask gets every run at once, so it is queueing
        "median_dispatch_seconds": median(r["started"] - r["submitted"] for r in rows),
        "median_return_seconds": median(r["received"] - r["ended"] for r in rows),
        "median_install_seconds": median(r.get("install_seconds") for r in rows),
    }


def _log_sweep(out, suite: Suite, report: SweepReport) -> None:
    from .results import utc_now

    entry = {
        "suite": suite.name,
        "file": str(suite.path),
        "finished_at": utc_now(),
        "planned": report.planned,
        "skipped": report.skipped,
        "ran": len(report.finished),
        "failed": len(report.failed),
        "retries": report.retries,
        **report.timing,
    }
    with open(Path(out) / SWEEP_LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class _SweepProgress:
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
        label += f"{'-bi' if cfg.bidirectional else ''} clip={cfg.clip} seed={cfg.seed}"
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


# ---------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    p.add_argument("suite", help="suite file (suites/NAME.toml) or a bare suite name")
    p.add_argument(
        "--out", default=None, help="results directory (default: results/<suite file stem>)"
    )
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    p.add_argument(
        "--threads", type=int, default=None, help="threads per run (default: cores // workers)"
    )
    p.add_argument("--dask", action="store_true", help="run on a local Dask cluster")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, tcp://host:port")
    p.add_argument("--retries", type=int, default=2, help="retries of a run whose worker died")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-run lines")


def main(args) -> int:
    suite = load_suite(args.suite)
    out = Path(args.out) if args.out else Path("results") / suite.path.stem
    if args.dry_run:
        return _print_plan(suite, out)
    if args.scheduler or args.dask:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError("Dask is not installed: pip install 'seqbench[dask]'") from None
    report = sweep(
        suite,
        out,
        workers=args.workers,
        threads=args.threads,
        scheduler=args.scheduler,
        dask=args.dask,
        retries=args.retries,
        progress=not args.quiet,
    )
    _print_summary(suite, out, report)
    return 1 if report.failed else 0


def _print_plan(suite: Suite, out: Path) -> int:
    import pandas as pd

    from .results import render_table, run_id

    p = plan(suite, out)
    rows = [{"run_id": run_id(c.identity()), **_short(c)} for c in p.todo]
    print(f"suite {suite.name}: {len(suite.configs)} runs ({suite.duplicates} duplicates merged), "
          f"{len(p.done)} already in {out}/, {len(p.todo)} to run")  # fmt: skip
    if rows:
        print(render_table(pd.DataFrame(rows), title="to run, in this order"))
    return 0


def _short(cfg) -> dict:
    keys = ("task", "model", "bidirectional", "seq_len", "hidden_size", "clip", "seed", "steps")
    d = {k: getattr(cfg, k) for k in keys}
    d["options"] = json.dumps(cfg.model_options) if cfg.model_options else ""
    return d


def _print_summary(suite: Suite, out: Path, report: SweepReport) -> None:
    from . import results
    from .report import summary_tables

    df = results.load(out)
    df = df[df["run_id"].isin(suite.run_ids())]
    for title, table in summary_tables(df).items():
        print(title)
        print(results.render_table(table))
    t = report.timing
    line = (f"{len(report.finished)} runs done now, {report.skipped} were already done, "
            f"{len(report.failed)} failed, {report.retries} retried; "
            f"wall {report.wall_seconds:.1f} s")  # fmt: skip
    if t.get("runs"):
        line += (
            f" ({t['executor']}: workers busy {100 * t['utilisation']:.0f}%, "
            f"training {t['train_seconds']:.0f} s of {t['worker_busy_seconds']:.0f} s busy, "
            f"start-up {t['first_start_seconds']:.1f} s)"
        )
    print(line)
    for rid, cfg, error in report.failed:
        print(f"failed: {rid} {cfg.task} {cfg.model} T={cfg.seq_len}: {error}")
    print(f"results in {out}/  (report: seqbench report --out {out})")
