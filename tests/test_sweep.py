"""Suites and sweeps: suite-file errors, expansion, process pool vs Dask, kill and resume,
worker death and retry. Tiny shapes throughout; numba kernels come from the disk cache."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqbench import results, sweep
from seqbench.cli import main
from seqbench.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = """
name = "tiny"
[defaults]
task = "copy-task"
hidden_size = 8
batch_size = 4
steps = 6
eval_every = 3
profile_every = 3
"""


def write(tmp_path, text, name="suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ids(out) -> list[str]:
    return sorted(p.stem for p in (Path(out) / "runs").glob("*.parquet"))


# ---------------------------------------------------------------- suite files


def test_grid_crossed_with_runs_over_defaults_and_duplicates_merged(tmp_path):
    path = write(
        tmp_path,
        TINY
        + """
[grid]
seq_len = [3, 5]
seed = [0, 1]
[[runs]]
model = "elman"
model_options = {nonlinearity = "relu"}
[[runs]]
model = ["lstm", "gru"]
seed = 7               # replaces the grid's seeds for this entry
[[runs]]
model = "gru"          # the same configs as the entry above with model gru: merged
seed = 7
""",
    )
    suite = sweep.load_suite(path)
    got = sorted((c.model, c.seq_len, c.seed) for c in suite.configs)
    want = sorted(
        [("elman", t, s) for t in (3, 5) for s in (0, 1)]
        + [(m, t, 7) for m in ("lstm", "gru") for t in (3, 5)]
    )
    assert got == want and suite.duplicates == 2 and suite.name == "tiny"
    elman = next(c for c in suite.configs if c.model == "elman")
    assert elman.model_options == {"nonlinearity": "relu"} and elman.hidden_size == 8
    assert len(set(suite.run_ids())) == len(suite.configs)
    cfg = suite.configs[0]
    assert suite.run_ids()[0] == results.run_id(RunConfig.from_dict({
        "task": "copy-task", "model": cfg.model, "seq_len": cfg.seq_len, "seed": cfg.seed,
        "hidden_size": 8, "batch_size": 4, "steps": 6, "model_options": cfg.model_options,
    }).identity())  # fmt: skip


def test_documented_examples_parse(tmp_path):
    readme = (ROOT / "README.md").read_text().split("## Sweeps and reports")[1]
    example = readme.split("```toml\n")[1].split("```")[0]
    suite = sweep.load_suite(write(tmp_path, example, "readme.toml"))
    assert len(suite.configs) == 16  # 3 models x 2 T x 2 clips, and the bidirectional LSTM's 4
    lines = sweep.__doc__.split("columns):\n\n")[1].split("\nWithout")[0].splitlines()
    suite = sweep.load_suite(write(tmp_path, "\n".join(x[4:] for x in lines), "doc.toml"))
    assert len(suite.configs) == 14 and {c.model for c in suite.configs} == {"elman", "lstm", "esn"}


def test_shipped_suites_parse():
    names = [p.stem for p in (ROOT / "suites").glob("*.toml")]
    assert {"long-dependency", "clipping", "reservoir", "speed", "reference"} <= set(names)
    sizes = {"long-dependency": 162, "clipping": 84, "reservoir": 162, "speed": 24, "reference": 12}
    for name, size in sizes.items():
        assert len(sweep.load_suite(ROOT / "suites" / f"{name}.toml").configs) == size, name


BAD_SUITES = [
    # (suite text, line, words the one-line message must contain)
    ("[defaults]\nhidden_size = 8\n[grid]\nseed = [0]\nhiden_size = [8]\n", 5,
     ["unknown key 'hiden_size' in [grid]", "known: task, model"]),
    ("[defaults]\nmodle = 'gru'\n[grid]\nseed = [0]\n", 2, ["unknown key 'modle' in [defaults]"]),
    ("[grid]\nseed = [0]\n[[runs]]\nmodel = 'gru'\n[[runs]]\n\nlr_rate = 0.1\n", 7,
     ["unknown key 'lr_rate' in [[runs]] #2"]),
    ("[defaults]\nhidden_size = '64'\n[grid]\nseed = [0]\n", 2,
     ["'hidden_size' in [defaults] must be an integer", '"64" (a string)']),
    ("[grid]\nseed = [0]\nseq_len = [10, 'x']\n", 3, ["'seq_len' in [grid] must be an integer"]),
    ("[grid]\nseed = [0]\nbidirectional = [1]\n", 3, ["'bidirectional' in [grid] must be true"]),
    ("[grid]\nseed = [0]\nlr = [true]\n", 3, ["'lr' in [grid] must be a number"]),
    ("[grid]\nmodel = ['gru']\nseed = 0\n", 3, ["'seed' in [grid] must be a list"]),
    ("[defaults]\nsteps = 5\n[grid]\nseed = []\n", 4, ["'seed' in [grid] is an empty list"]),
    ("[defaults]\nsteps = 5\n\n[grid]\n# nothing yet\n", 4, ["[grid] is empty"]),
    ("[defaults]\nsteps = 5\n", 1, ["sweeps nothing"]),
    ("[grid]\nmodel = ['gru', 'rnn']\n", 2, ["'model' in [grid]", "model 'rnn' is not known"]),
    ("[grid]\nseed = [0]\nclip = ['norm:']\n", 3, ["'clip' in [grid]", "use none, value:C"]),
    ("[grid]\nseed = [0]\n[[runs]]\nmodel = 'elman'\nmodel_options = {nonlin = 'relu'}\n", 5,
     ["[[runs]] #1 (model=elman)", "model 'elman' has no option 'nonlin'; its options"]),
    ("[grid]\nseed = [0, 1\nmodel = ['gru']\n", 3, ["TOML syntax error"]),
    ("[defaults]\nsteps = = 5\n", 2, ["TOML syntax error", "Invalid value"]),
    ("hidden = 3\n[grid]\nseed = [0]\n", 1, ["unknown top-level key 'hidden'"]),
]  # fmt: skip


@pytest.mark.parametrize("text, line, words", BAD_SUITES)
def test_malformed_suite_is_one_line_naming_key_and_line_exit_2(
    text, line, words, tmp_path, capsys
):
    path = write(tmp_path, text, "bad.toml")
    out = tmp_path / "res"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"seqbench: error: {path}:{line}: "), err
    assert err.count("\n") == 1 and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


def test_missing_suite_file(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "no suite file" in capsys.readouterr().err


# ---------------------------------------------------------------- running


def _config_columns(out):
    df = results.load(out).sort_values("run_id").reset_index(drop=True)
    return df[[*results.CONFIG_FIELDS, "run_id", "status", "final_loss", "steps_run"]]


def test_pool_and_dask_give_the_same_table_and_resume_skips(tmp_path, capsys):
    from distributed import Client, LocalCluster

    path = write(tmp_path, TINY + "[grid]\nmodel = ['elman', 'gru']\nseq_len = [3, 4]\n")
    pool_out, dask_out = tmp_path / "pool", tmp_path / "dask"
    assert main(["sweep", str(path), "--out", str(pool_out), "--workers", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "copy-task: runs solved" in text and "4 runs done now" in text

    # in-process workers keep the test fast; the Dask code path is the same
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:  # fmt: skip
        report = sweep.sweep(path, dask_out, client=client, progress=False)
    assert len(report.finished) == 4 and not report.failed
    a, b = _config_columns(pool_out), _config_columns(dask_out)
    assert len(a) == 4
    assert a.equals(b), (a, b)  # bit-identical: runs are deterministic per seed
    for sub in ("history", "profiles"):
        assert sorted(p.name for p in (dask_out / sub).iterdir()) == sorted(
            p.name for p in (pool_out / sub).iterdir()
        )

    # everything is done: a rerun plans nothing and touches nothing
    before = {p: p.stat().st_mtime_ns for p in (pool_out / "runs").iterdir()}
    assert main(["sweep", str(path), "--out", str(pool_out), "--dry-run"]) == 0
    assert "4 already in" in capsys.readouterr().out
    assert main(["sweep", str(path), "--out", str(pool_out), "--quiet"]) == 0
    assert "0 runs done now, 4 were already done" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (pool_out / "runs").iterdir()}
    log = [json.loads(s) for s in (pool_out / results.SWEEP_LOG).read_text().splitlines()]
    assert len(log) == 1 and log[0]["ran"] == 4 and log[0]["wall_seconds"] > 0  # no-ops unlogged


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        kids += [int(k) for k in text.split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt_when_a_run_lands(args, tmp_path, sig, group) -> tuple[int, list[int]]:
    """Start a sweep; once a new run file is on disk send ``sig`` to the sweep (or to its
    whole process group, as a terminal's Ctrl-C does); return its exit code and workers."""
    out = Path(args[args.index("--out") + 1])
    before = set(ids(out)) if out.exists() else set()
    with open(tmp_path / "stderr.txt", "a") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seqbench.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    workers = []
    try:
        deadline = time.monotonic() + 60
        while set(ids(out)) <= before and proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid) or workers
            time.sleep(0.02)
        workers = _children(proc.pid) or workers
        (os.killpg if group else os.kill)(proc.pid, sig)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(map(_alive, workers)), "workers outlived the sweep"
    return code, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and signals")
def test_interrupted_and_killed_sweep_resumes_with_every_run_exactly_once(tmp_path, capsys):
    # eight short runs on two workers: Ctrl-C the sweep once a run is on disk, sweep again
    # and SIGKILL the sweep process alone (its workers must die with it), then finish
    path = write(
        tmp_path,
        TINY.replace("steps = 6", "steps = 150").replace("eval_every = 3", "eval_every = 50")
        + "stop_when_solved = false\n[grid]\nmodel = ['elman']\nseq_len = [3]\n"
        "seed = [0, 1, 2, 3, 4, 5, 6, 7]\n",
    )
    out = tmp_path / "res"
    args = ["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]
    code, _ = _interrupt_when_a_run_lands(args, tmp_path, signal.SIGINT, group=True)
    assert code == 130 and "interrupted" in (tmp_path / "stderr.txt").read_text()
    code, _ = _interrupt_when_a_run_lands(args, tmp_path, signal.SIGKILL, group=False)
    assert code == -signal.SIGKILL
    first = {p.name: (_digest(p), p.stat().st_mtime_ns) for p in (out / "runs").glob("*.parquet")}
    assert 2 <= len(first) < 8, "each interruption should land midway"

    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"{8 - len(first)} runs done now, {len(first)} were already done" in text
    suite = sweep.load_suite(path)
    assert ids(out) == sorted(suite.run_ids())  # every run exactly once, none lost
    for sub in ("history", "profiles"):
        assert sorted(p.stem for p in (out / sub).glob("*.parquet")) == ids(out)
    for name, (digest, mtime) in first.items():  # finished runs were not redone
        p = out / "runs" / name
        assert (_digest(p), p.stat().st_mtime_ns) == (digest, mtime)
    assert len(results.load(out)) == 8


def flaky_worker(cfg, out):
    """Dies (as a killed process) on the very first call of the sweep; raises for seed 2."""
    marker = Path(out) / "crashed-once"
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)
    if cfg.seed == 2:
        raise RuntimeError("boom")
    return sweep.run_in_worker(cfg, out)


def test_dead_worker_is_retried_and_a_raising_run_is_reported(tmp_path):
    path = write(tmp_path, TINY + "[grid]\nmodel = ['elman']\nseq_len = [3]\nseed = [0, 1, 2]\n")
    out = tmp_path / "res"
    report = sweep.sweep(path, out, workers=2, progress=False, worker=flaky_worker)
    assert report.retries >= 1
    assert [(cfg.seed, err) for _, cfg, err in report.failed] == [(2, "RuntimeError: boom")]
    assert sorted(r["seed"] for r in report.finished) == [0, 1]
    assert len(ids(out)) == 2


def test_retries_are_bounded(tmp_path):
    events = []
    cfg = RunConfig(hidden_size=4, seq_len=2, steps=1).validated()
    sweep.run_local([cfg], tmp_path, 1, 1, 1, events.append, worker=always_dies)
    assert [e.kind for e in events] == ["retry", "failed"]
    assert "worker died" in events[-1].error and "2 times" in events[-1].error


def always_dies(cfg, out):
    os._exit(3)


def test_a_pool_worker_records_the_commit_it_started_on(monkeypatch):
    # the checkout moves on between the worker's start and its first saved run
    from seqbench.results import provenance
    from seqbench.sweep import workers

    head, asked = ["a" * 40], []
    monkeypatch.setattr(provenance, "_git_commit", lambda: asked.append(1) or head[0])
    monkeypatch.setattr(workers, "limit_threads", lambda threads: None)
    monkeypatch.setattr(workers, "_die_with_parent", lambda parent: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the worker's SIGINT setting
    provenance._environment.cache_clear()
    try:
        workers.init_pool_worker(1, os.getpid())
        head[0] = "b" * 40  # a commit lands while the worker trains its first run
        assert results.environment()["git_commit"] == "a" * 40
        assert len(asked) == 1  # git was asked once, at the start
    finally:
        provenance._environment.cache_clear()


def test_limit_threads_pins_the_numba_backend_pool_too():
    """A worker's seqbench kernels must not take every core: N workers x all cores would
    oversubscribe, and the ESN kernels' spin barrier stalls when a partner is descheduled."""
    code = (
        "import os\n"
        "from seqbench.backends import cpu_runtime\n"
        "from seqbench.sweep import limit_threads\n"
        "cpu_runtime.set_num_threads(2)\n"
        "limit_threads(1)\n"
        "print(cpu_runtime.get_num_threads(), os.environ['SEQBENCH_THREADS'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_a_dask_task_brings_back_the_runs_weights(tmp_path):
    """run_on_dask writes to a private folder and returns the files; installed under out, a
    char-lm run's weights land beside its tables (seqbench sample reads them there)."""
    from seqbench.results.storage import read_weights
    from seqbench.sweep.workers import run_on_dask

    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat; the rat ate the hat.\n" * 40)
    cfg = RunConfig(task="char-lm", model="gru", hidden_size=4, batch_size=2, seq_len=5,
                    steps=2, dtype="float64", eval_every=2, profile_every=1000,
                    task_options={"path": str(text)}).validated()  # fmt: skip
    result = run_on_dask(cfg)
    assert set(result["files"]) == {"history", "profiles", "weights", "runs"}
    out = tmp_path / "out"
    sweep.install_files(out, result["run_id"], result.pop("files"))
    assert ids(out) == [result["run_id"]]
    weights = read_weights(out, result["run_id"])
    assert weights is not None and weights["weight_hh_l0"].shape == (12, 4)
