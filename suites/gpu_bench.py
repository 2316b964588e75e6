"""seqbench's CUDA kernels against torch's cuDNN RNNs on the same weights (needs a GPU).

    python suites/gpu_bench.py                # lstm, gru, elman; float32
    python suites/gpu_bench.py --cells lstm --repeat 20 --input-size 256

Two workloads (issue 7's targets):
    train   B=64, T=1000, H=256: forward + BPTT of a summed loss (dy = 1)
    infer   B=1,  T=1000, H=256: forward only
Each is timed three ways, medians of --repeat runs after a warm-up (compile) run:
    cudnn    torch.nn.{LSTM,GRU,RNN} on the GPU, tensors resident, torch.cuda.synchronize()
    kernels  seqbench's device path with every array resident: input-projection GEMM, the
             recurrence kernel(s), and for train the backward kernel plus the weight and
             input gradient GEMMs (what the cuda backend runs, without host copies)
    model    seqbench's model API, backend="cuda": host arrays in and out (adds the copies)
The ratio printed is seqbench / cuDNN (below 1: seqbench faster). Not run in CI.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

CELLS = {"lstm": ("LSTM", 4), "gru": ("GRU", 3), "elman": ("RNN", 1)}
WORKLOADS = {"train": 64, "infer": 1}  # batch size; T and H from the command line


def _median_ms(fn, repeat, sync):
    fn()  # warm-up: compiles, allocates
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _torch_module(torch, cell, model):
    name, _ = CELLS[cell]
    rnn = getattr(torch.nn, name)(model.input_size, model.hidden_size, batch_first=True)
    sd = {k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()}
    rnn.load_state_dict(sd)
    return rnn.cuda()


def _device_step(cell, model, x_d, train):
    """seqbench's device path for one layer, every array resident; returns a closure."""
    from numba import cuda
    from seqbench.kernels.cuda import elman, gru, lstm

    from seqbench.backends import cuda_gpu as be

    p = model._unit_params("_l0")
    T, B, _ = x_d.shape
    H = model.hidden_size
    G = CELLS[cell][1] * H
    dt = x_d.dtype
    w_t, w = be.weights(p["weight_hh"], True), be.weights(p["weight_hh"])
    b_hh = be.weights(p["bias_hh"])
    zeros = cuda.to_device(np.zeros((B, H), dtype=dt))
    dout = cuda.to_device(np.ones((T, B, H), dtype=dt))
    ex = cuda.device_array  # allocation is part of what the backend does per call

    def step():
        x_proj = be._project(x_d, p)
        h_seq = ex((T, B, H), dt)
        if cell == "lstm":
            gates, c_seq = ex((T, B, G), dt), ex((T, B, H), dt)
            lstm.lstm_forward(x_proj, w_t, b_hh, zeros, zeros, gates, c_seq, h_seq)
        elif cell == "gru":
            gates = ex((T, B, 4 * H), dt)
            gru.gru_forward(x_proj, w_t, b_hh, zeros, gates, h_seq)
        else:
            elman.elman_forward(x_proj, w_t, b_hh, zeros, False, h_seq)
        if not train:
            return
        dh0, norms = ex((B, H), dt), ex((T,), dt)
        if cell == "lstm":
            dpre, dc0 = ex((T, B, G), dt), ex((B, H), dt)
            lstm.lstm_backward(dout, zeros, zeros, gates, c_seq, zeros, w, dpre, dh0, dc0, norms)
            dx_proj = dh_proj = dpre
        elif cell == "gru":
            dx_proj, dh_proj = ex((T, B, G), dt), ex((T, B, G), dt)
            gru.gru_backward(dout, zeros, gates, h_seq, zeros, w, dx_proj, dh_proj, dh0, norms)
        else:
            dx_proj = dh_proj = ex((T, B, H), dt)
            elman.elman_backward(dout, zeros, h_seq, w, False, dx_proj, dh0, norms)
        be._input_grads(dx_proj, x_d, p)
        be._prev_wgrad(dh_proj, h_seq, zeros)
        be._colsum(dh_proj)

    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print(
            "gpu_bench: error: torch is not installed; it times cuDNN as the peer: "
            "pip install torch (a CUDA build)",
            file=sys.stderr,
        )
        return 2
    from numba import cuda
    from seqbench.kernels.cuda import _plan

    import seqbench as sb

    if not torch.cuda.is_available() or not cuda.is_available():
        print(
            "gpu_bench: error: no CUDA GPU visible to both torch and numba; "
            "run it on a machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    print(
        f"GPU: {name} (numba), {torch.cuda.get_device_name()} (torch {torch.__version__}, "
        f"cuDNN {torch.backends.cudnn.version()}), {dev.MULTIPROCESSOR_COUNT} SMs"
    )
    torch.backends.cudnn.benchmark = True
    tdtype = getattr(torch, args.dtype)
    print(
        f"{'cell':6s} {'work':6s} {'B':>3s} {'T':>5s} {'H':>4s} {'path':11s} "
        f"{'cudnn ms':>9s} {'kernels ms':>10s} {'ratio':>6s} {'model ms':>9s} {'ratio':>6s} "
        f"{'max|dy|':>8s}"
    )
    for cell in args.cells:
        for work in args.workloads:
            B, T, H = WORKLOADS[work], args.length, args.hidden_size
            train = work == "train"
            model = sb.build_model(cell, args.input_size, H, dtype=args.dtype, backend="cuda")
            rnn = _torch_module(torch, cell, model).to(tdtype)
            x = np.random.default_rng(0).standard_normal((B, T, args.input_size))
            x = x.astype(args.dtype)
            xt = torch.from_numpy(x).cuda()

            def cudnn(xt=xt, rnn=rnn, train=train):
                if train:
                    xg = xt.detach().requires_grad_()
                    y, _ = rnn(xg)
                    y.sum().backward()
                else:
                    with torch.no_grad():
                        rnn(xt)

            def api(model=model, x=x, train=train):
                y, tape = model.forward(x)
                if train:
                    model.backward(tape, np.ones_like(y))

            x_d = cuda.to_device(np.ascontiguousarray(x.transpose(1, 0, 2)))
            device_step = _device_step(cell, model, x_d, train)
            t_cudnn = _median_ms(cudnn, args.repeat, torch.cuda.synchronize)
            t_kernels = _median_ms(device_step, args.repeat, cuda.synchronize)
            plan = _plan.last_plan  # of the last recurrence launched
            path = "persistent" if plan.persistent else "per-step"
            t_model = _median_ms(api, max(1, args.repeat // 2), cuda.synchronize)
            with torch.no_grad():
                want = rnn(xt)[0].cpu().numpy()
            diff = float(np.max(np.abs(model.forward(x)[0] - want)))
            print(
                f"{cell:6s} {work:6s} {B:3d} {T:5d} {H:4d} {path:11s} {t_cudnn:9.2f} "
                f"{t_kernels:10.2f} {t_kernels / t_cudnn:6.2f} {t_model:9.2f} "
                f"{t_model / t_cudnn:6.2f} {diff:8.1e}"
            )


if __name__ == "__main__":
    sys.exit(main())
