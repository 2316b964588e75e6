"""``seqbench bench --reservoir`` (the reservoir against ReservoirPy) and ``--busy``, tiny."""

import os
import re

import numpy as np
import pytest

from seqbench import bench, bench_reservoir
from seqbench.cli import main
from seqbench.results.provenance import environment

TINY = ["bench", "--reservoir", "--reservoir-shape", "2,15,24", "--pairs", "1", "--repeat", "1"]


def test_the_reservoir_sides_alternate_each_in_its_own_worker():
    """ReservoirPy, seqbench, ReservoirPy, seqbench; ratio = ReservoirPy / seqbench."""
    calls = []
    fake = {"reservoirpy": [[9.0], [12.0]], "seqbench": [[3.0], [2.0]]}

    def worker(job):
        assert job["reservoir"] and job["shape"] == [1, 5, 8]
        calls.append(job["side"])
        ms = fake[job["side"]][sum(c == job["side"] for c in calls) - 1]
        return {"run_ms": ms, "first_call_s": 0.1}

    job = dict(reservoir=True, cell="esn", shape=[1, 5, 8], repeat=1, threads=1)
    r = bench.alternated(job, 2, True, ("run",), worker, peer="reservoirpy")
    assert calls == ["reservoirpy", "seqbench", "reservoirpy", "seqbench"]
    assert r["reservoirpy_run"] == 10.5 and r["seqbench_run"] == 2.5
    assert r["ratio_run"] == 10.5 / 2.5 and r["ratio_run_range"] == (3.0, 6.0)


def test_both_sides_compute_the_same_states():
    """The ReservoirPy side is built on the seqbench model's matrices: same states."""
    pytest.importorskip("reservoirpy")
    from seqbench.models.esn import build_esn

    B, T, N = 2, 15, 24
    ours = bench_reservoir.case(B, T, N, "seqbench")()[0]
    model = build_esn(1, N, seed=0, connectivity=0.1, spectral_radius=0.9)
    sd = model.state_dict()
    res = bench_reservoir._reservoirpy()(
        W=sd["weight_hh_l0"], Win=sd["weight_ih_l0"], bias=sd["bias_hh_l0"], lr=1.0
    )
    u = np.random.default_rng(0).uniform(-1, 1, (B, T, 1))
    res.run(u[0, :2])
    for b in range(B):
        res.reset()
        np.testing.assert_allclose(ours[b], res.run(u[b]), rtol=0, atol=1e-10)


def test_bench_reservoir_prints_one_row_with_per_step_times(capsys):
    """The real workers at a tiny shape: both sides' times, the ratio and us per step."""
    assert main(TINY) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "echo-state reservoir, N=24" in text and "2 series x 15 steps" in text
    assert environment()["cpu"] in text  # every figure names its CPU
    numbers = re.findall(r"\d+\.\d+x?", text.split("┩")[1])
    pytest.importorskip("reservoirpy")
    assert len(numbers) == 7  # two times, the ratio and its range's ends, two per-step times
    ours_ms, theirs_ms = float(numbers[0]), float(numbers[1])
    shown = 0.005 / ours_ms + 0.005 / theirs_ms + 0.01  # the printed figures' rounding
    assert float(numbers[2].rstrip("x")) == pytest.approx(theirs_ms / ours_ms, rel=shown)
    assert float(numbers[5]) == pytest.approx(1e3 * ours_ms / 30, abs=1e3 * 0.005 / 30 + 0.005)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--reservoir-shape", "1,x,3"], "--reservoir-shape '1,x,3' is not B,T,N"),
        (["--reservoir-shape", "1,0,3"], "is not B,T,N (three positive integers"),
        (["--same-process"], "--reservoir times each side in its own process"),
        (["--table", "out", "--busy"], "--table records a quiet machine; leave --busy out"),
    ],
)
def test_bad_reservoir_bench_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main([*TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_busy_neighbour_runs_beside_and_is_named_then_gone(monkeypatch):
    monkeypatch.setattr(bench_reservoir, "BUSY_SETTLE_S", 0.0)
    before = set(_children())
    with bench_reservoir.busy_neighbour(True):
        assert "one busy process beside" in bench._on(2)
        spinning = set(_children()) - before
        assert len(spinning) == 1
    assert "busy" not in bench._on(2)
    assert not (set(_children()) & spinning)  # killed and reaped
    with bench_reservoir.busy_neighbour(False):
        assert set(_children()) == before


def _children():
    me = str(os.getpid())
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            out.append(pid)
    return out
