"""The asv suite (suites/asv) imports and has no benchmark asv would silently skip.

asv only runs methods whose names start with a known prefix, and quietly drops a class whose
``params`` and ``param_names`` disagree. This imports every module of the suite (under its
own package name: the folder is called ``asv`` like the tool) and checks both, plus the
arguments each method receives. ``asv check --python=same`` does the same from asv's side.
"""

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "asv"
PACKAGE = "seqbench_asv_suite"
PREFIXES = ("time_", "timeraw_", "peakmem_", "mem_", "track_")
HOOKS = {"setup", "teardown", "setup_cache", "teardown_cache"}


def _load_suite():
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, SUITE / "__init__.py", submodule_search_locations=[str(SUITE)]
        )
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = pkg
        spec.loader.exec_module(pkg)
    return [
        importlib.import_module(f"{PACKAGE}.{p.stem}")
        for p in sorted(SUITE.glob("*.py"))
        if p.stem != "__init__"
    ]


MODULES = _load_suite()
BENCH_MODULES = [m for m in MODULES if m.__name__.rsplit(".", 1)[1].startswith("bench_")]


def _classes(module):
    return [
        c
        for name, c in vars(module).items()
        if inspect.isclass(c) and c.__module__ == module.__name__ and not name.startswith("_")
    ]


CLASSES = [c for m in BENCH_MODULES for c in _classes(m)]


def _params(cls):
    params = getattr(cls, "params", [])
    if params and not isinstance(params[0], (list, tuple)):
        params = [params]  # one parameter given as a flat list
    return params


def test_suite_has_benchmark_modules():
    names = {m.__name__.rsplit(".", 1)[1] for m in BENCH_MODULES}
    assert {"bench_kernels", "bench_training"} <= names


def _asv_conf():
    text = (ROOT / "asv.conf.json").read_text()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))  # asv allows // comments


def test_asv_conf_points_at_the_suite():
    conf = _asv_conf()
    assert conf["benchmark_dir"] == "suites/asv" and conf["repo"] == "."
    for key in ("env_dir", "html_dir"):  # built environments and html stay out of git
        assert conf[key].startswith(".asv/")


def test_asv_builds_commits_and_keeps_their_results():
    """asv builds each commit into a virtualenv (``asv continuous main HEAD``, ``asv run
    A..B``); the results JSON goes to results/asv/, which .gitignore lets through."""
    conf = _asv_conf()
    assert conf["environment_type"] == "virtualenv"
    # only torch 2.13.0 installs here: a bare "torch" would pick another release elsewhere
    assert conf["matrix"]["req"]["torch"] == ["2.13.0"]
    assert conf["results_dir"] == "results/asv"
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "!results/asv/" in ignore


@pytest.mark.parametrize(
    "cls", CLASSES, ids=lambda c: f"{c.__module__.rsplit('.', 1)[1]}.{c.__name__}"
)
def test_every_method_is_a_benchmark_asv_runs(cls):
    members = {k: v for base in reversed(cls.__mro__[:-1]) for k, v in vars(base).items()}
    methods = [  # inherited ones too: asv reads the class with inspect.getmembers
        name
        for name, v in members.items()
        if callable(v) and not name.startswith("_") and name not in HOOKS
    ]
    bad = [name for name in methods if not name.startswith(PREFIXES)]
    assert not bad, f"{cls.__name__}: {bad} would be skipped by asv (prefixes {PREFIXES})"
    assert any(name.startswith(PREFIXES) for name in methods), f"{cls.__name__}: no benchmark"


@pytest.mark.parametrize(
    "cls", CLASSES, ids=lambda c: f"{c.__module__.rsplit('.', 1)[1]}.{c.__name__}"
)
def test_params_and_param_names_agree(cls):
    params = _params(cls)
    names = getattr(cls, "param_names", [])
    assert len(params) == len(names), f"{cls.__name__}: {len(params)} params, names {names}"
    for values in params:
        assert len(values) > 0 and len(set(map(repr, values))) == len(values)
    # every benchmark and hook takes (self, [setup_cache result,] *params)
    extra = 1 if "setup_cache" in vars(cls) else 0
    for name, fn in vars(cls).items():
        if callable(fn) and (name.startswith(PREFIXES) or name in ("setup", "teardown")):
            n_args = len(inspect.signature(fn).parameters) - 1
            assert n_args == len(names) + extra, f"{cls.__name__}.{name} takes {n_args} args"


def test_a_seqbench_case_leaves_torch_out_of_its_process():
    """asv's peakmem_ is the whole process's peak: torch imported beside seqbench adds ~180 MB
    that would be charged to seqbench's step. A numba case's setup must not import it (in a
    fresh interpreter: this one may have imported torch for other tests)."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location({PACKAGE!r}, "
        f"{str(SUITE / '__init__.py')!r}, submodule_search_locations=[{str(SUITE)!r}])\n"
        "pkg = importlib.util.module_from_spec(spec); sys.modules[spec.name] = pkg\n"
        "spec.loader.exec_module(pkg)\n"
        f"from {PACKAGE}.bench_kernels import TrainStep\n"
        "TrainStep().setup('gru', 'numba', '4,20,3,16', 'float32')\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "SEQBENCH_ASV_SMOKE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "False"
