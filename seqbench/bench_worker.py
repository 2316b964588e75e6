"""One side of a ``seqbench bench`` comparison, timed alone in its own process.

``python -m seqbench.bench_worker '{"side": "torch", "cell": "lstm", ...}'`` builds the case
(the seqbench model from its seed; torch's module loaded with the same weights), warms it up,
times ``repeat`` forward calls and ``repeat`` train steps (``seqbench.bench._timed``: a pause
and an untimed call before each) and prints one JSON line: per-call milliseconds of each kind
and the first call's seconds. Nothing of the other library runs in this process, so neither
thread pool (torch's OpenMP, seqbench's workers) can slow the other: timed in one process,
torch's GRU step ran 3x slower right after a seqbench call, and seqbench's LSTM step slower
after torch's, for up to ~100 ms.

A job with ``run`` (a RunConfig's fields: ``seqbench bench --train-step``) times the whole
training step instead, ``Trainer.step`` on a fresh batch as ``seqbench run`` takes it: on the
config's backend for side "seqbench", on the torch backend for side "torch" (``train_ms``).
A ``reservoir`` job times the echo-state reservoir or ReservoirPy (``seqbench.bench_reservoir``).
"""

from __future__ import annotations

import json
import sys
import time


def time_side(job: dict) -> dict:
    from .bench import SeqbenchCase, TorchCase, _timed, set_threads

    if job.get("reservoir"):
        from .bench_reservoir import time_side as time_reservoir

        return time_reservoir(job)
    threads = set_threads(job.get("threads"))
    if "run" in job:
        return _time_steps(job, threads)
    shape = tuple(job["shape"])
    ours = SeqbenchCase(job["cell"], shape, job["dtype"], job.get("backend", "numba"))
    case = ours
    if job["side"] == "torch":
        case = TorchCase(job["cell"], shape, job["dtype"], ours.model.state_dict(), ours.x)
    t0 = time.perf_counter()
    case.train_step()  # seqbench: compiles or loads the cached kernels; torch: first allocation
    first = time.perf_counter() - t0
    case.forward()
    case.train_step()
    out = {"side": job["side"], "threads": threads, "first_call_s": first}
    for kind, fn in (("fwd", case.forward), ("train", case.train_step)):
        out[f"{kind}_ms"] = [1e3 * _timed(fn) for _ in range(int(job["repeat"]))]
    if job.get("phases") and case is ours:  # after the timed calls, which it cannot slow
        from .bench_roofline import phase_ms

        out["phases_ms"] = phase_ms(case.train_step, int(job["repeat"]))
    return out


def train_step(run: dict, side: str):
    """A callable doing one training step of the run ``run`` (RunConfig fields) as
    ``seqbench run`` does it; side "torch": on the torch backend."""
    import dataclasses

    from .config import RunConfig
    from .train import Trainer

    cfg = RunConfig.from_dict(run)
    if side == "torch":
        cfg = dataclasses.replace(cfg, backend="torch").validated()
    tr = Trainer(cfg)
    return lambda: tr.step(tr.task.generate(tr.data_rng, cfg.batch_size))


def _time_steps(job: dict, threads: int) -> dict:
    from .bench import _timed

    step = train_step(job["run"], job["side"])
    t0 = time.perf_counter()
    step()  # seqbench: compiles or loads the cached kernels; torch: first allocation
    first = time.perf_counter() - t0
    step()
    out = {"side": job["side"], "threads": threads, "first_call_s": first}
    out["train_ms"] = [1e3 * _timed(step) for _ in range(int(job["repeat"]))]
    if job.get("phases") and job["side"] == "seqbench":  # after the timed calls
        from .bench_roofline import phase_ms

        out["phases_ms"] = phase_ms(step, int(job["repeat"]))
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(json.dumps(time_side(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
