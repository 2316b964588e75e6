"""Memory of a train step, seqbench against torch, each side in its own process.

    python suites/peakmem.py numba gru 32,100,10,128           # kernels: forward + BPTT
    python suites/peakmem.py torch gru 32,100,10,128
    python suites/peakmem.py numba lstm 64,20,128 copy-task    # the whole step, B,T,H

Prints one JSON line: the RSS once the libraries are loaded (a tiny step of the same cell has
run, so numba's compiled kernels or torch's autograd are in) and the model is built
(``rss_built_mib``), the process's peak RSS over three steps at the shape (``process_peak_mib``,
what asv's ``peakmem_`` benchmarks report) and the difference, the step's own working memory
(``steps_rise_mib``: tape, gradients, buffers, allocator caches). The peak is reset through
/proc/self/clear_refs (Linux) after the warm-up, so it is the steps' alone. A whole step's
Trainer runs its probe at initialisation, before the reset: there only the process peak
compares. Not run in CI.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys


def status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def kernel_step(side, cell, shape):
    from seqbench.backends import cpu_runtime
    from seqbench.bench import SeqbenchCase, TorchCase

    small = (2, 3, shape[2], 4)
    tiny = SeqbenchCase(cell, small, "float32")  # loads numba and the kernels
    if side == "torch":
        import torch

        torch.set_num_threads(2)
        TorchCase(cell, small, "float32", tiny.model.state_dict(), tiny.x).train_step()
    else:
        cpu_runtime.set_num_threads(2)
        tiny.train_step()
    ours = SeqbenchCase(cell, shape, "float32")
    if side == "torch":
        return TorchCase(cell, shape, "float32", ours.model.state_dict(), ours.x).train_step
    return ours.train_step


def whole_step(side, cell, task, shape):
    from seqbench.bench_worker import train_step
    from seqbench.config import RunConfig

    B, T, H = shape
    small = RunConfig(task=task, model=cell, seq_len=3, batch_size=2, hidden_size=4).validated()
    train_step(dataclasses.asdict(small), side)()
    cfg = RunConfig(task=task, model=cell, seq_len=T, batch_size=B, hidden_size=H).validated()
    return train_step(dataclasses.asdict(cfg), side)


def main(argv) -> int:
    side, cell, shape = argv[0], argv[1], tuple(int(v) for v in argv[2].split(","))
    task = argv[3] if len(argv) > 3 else None
    step = whole_step(side, cell, task, shape) if task else kernel_step(side, cell, shape)
    gc.collect()
    built = status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    for _ in range(3):
        step()
    peak = status_mib("VmHWM")
    print(json.dumps({"side": side, "cell": cell, "shape": shape, "task": task,
                      "rss_built_mib": round(built, 1), "process_peak_mib": round(peak, 1),
                      "steps_rise_mib": round(peak - built, 1)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
