"""``seqbench bench --table``: the CPU grid written to CSV, markdown and PNG, at tiny sizes."""

import math

import pandas as pd
import pytest

import seqbench.bench_table as bt
from seqbench.bench import _torch
from seqbench.cli import build_parser, main

TINY = ["--cells", "lstm", "--table-batches", "1,2", "--table-hidden", "8", "--table-steps", "5",
        "--pairs", "1", "--repeat", "1", "--threads", "1"]  # fmt: skip
needs_torch = pytest.mark.skipif(_torch() is None, reason="torch is not installed")


def _files(out):
    return {p.suffix: p for p in out.iterdir() if not p.name.startswith(".")}


@needs_torch
def test_table_times_the_grid_and_writes_csv_markdown_and_figure(tmp_path, capsys):
    """Real workers, one per implementation and grid point: a tidy CSV of cells x B x H x
    implementations x phases rows with positive finite times, the markdown, the PNG."""
    assert main(["bench", "--table", str(tmp_path), *TINY]) == 0
    files = _files(tmp_path)
    assert sorted(files) == [".csv", ".md", ".png"] and files[".png"].stat().st_size > 0
    assert files[".csv"].stem.startswith("cpu-rnn-") and "-1t-" in files[".csv"].stem
    df = pd.read_csv(files[".csv"])
    assert list(df.columns) == bt.COLUMNS
    assert len(df) == 1 * 2 * 1 * 3 * 2  # cells x B x H x implementations x phases
    assert set(df.implementation) == {"seqbench", "torch", "torch-no-onednn"}
    assert set(df.phase) == {"forward", "train"} and set(df.B) == {1, 2}
    assert (df[["T", "I", "H", "threads", "pairs"]].to_numpy() == [5, 8, 8, 1, 1]).all()
    for col in ("median_ms", "min_ms", "max_ms"):
        assert all(math.isfinite(v) and v > 0 for v in df[col])
    assert (df.min_ms <= df.median_ms).all() and (df.median_ms <= df.max_ms).all()
    assert df.cpu.notna().all() and df.torch_version.str.startswith("2.").all()
    md = files[".md"].read_text()
    assert "--table-batches 1,2 --table-hidden 8 --table-steps 5" in md
    assert md.count("\n| lstm | float32 | 8 |") == 2
    out = capsys.readouterr().out
    assert "wrote" in out and "no oneDNN" in " ".join(out.split())


@needs_torch
def test_the_no_onednn_worker_turns_onednn_off():
    job = dict(cell="gru", shape=[1, 3, 4, 4], dtype="float32", repeat=1, threads=1)
    r = bt.run_side({**job, "implementation": "torch-no-onednn"})
    assert r["onednn"] is False and r["side"] == "torch" and min(r["fwd_ms"] + r["train_ms"]) > 0


@needs_torch
def test_onednn_off_changes_the_lstm_path_only():
    """What the docstring claims of torch: oneDNN runs the LSTM (mkldnn_rnn_layer, forward and
    backward); switched off, aten's own loop. GRU and Elman never use it."""
    torch = _torch()
    from torch.profiler import profile

    def ops(cls, enabled):
        m, x = cls(4, 4, batch_first=True), torch.randn(2, 3, 4)
        before, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, enabled
        try:  # the setter, as the worker does it (flags() also sets TF32, with a warning)
            with profile() as p:
                m(x)[0].sum().backward()
        finally:
            torch.backends.mkldnn.enabled = before
        return {e.key for e in p.key_averages()}

    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    assert {"aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"} <= ops(torch.nn.LSTM, True)
    assert not any("mkldnn" in k for k in ops(torch.nn.LSTM, False))
    for cls in (torch.nn.GRU, torch.nn.RNN):
        assert not any("mkldnn" in k for k in ops(cls, True))


def test_the_implementations_alternate_each_in_its_own_worker():
    """torch, torch-no-onednn, seqbench per round; per implementation the median, smallest and
    largest of the workers' medians."""
    calls = []
    fake = {"torch": [4.0, 8.0, 6.0], "torch-no-onednn": [5.0] * 3, "seqbench": [1.0, 3.0, 2.0]}

    def worker(job):
        calls.append(job["implementation"])
        ms = fake[job["implementation"]][calls.count(job["implementation"]) - 1]
        return {"fwd_ms": [ms, ms], "train_ms": [2 * ms], "threads": 1}

    rows = bt.time_point({"cell": "gru"}, pairs=3, worker=worker)
    impls = bt.implementations()
    assert calls == impls * 3
    got = {(r["implementation"], r["phase"]): (r["median_ms"], r["min_ms"], r["max_ms"])
           for r in rows}  # fmt: skip
    assert got[("seqbench", "forward")] == (2.0, 1.0, 3.0)
    assert got[("seqbench", "train")] == (4.0, 2.0, 6.0)
    if "torch" in impls:
        assert got[("torch", "forward")] == (6.0, 4.0, 8.0)


def test_files_from_a_fake_grid_are_written_in_place_of_older_ones(tmp_path):
    """The same table written twice: the files replaced, no temp file left beside them."""
    args = build_parser().parse_args(["bench", "--table", str(tmp_path), *TINY[:-2]])

    def worker(job):
        B = job["shape"][0]
        return {"fwd_ms": [1.0 * B], "train_ms": [3.0 * B], "threads": 2}

    frame = bt.time_grid(args, worker=worker)
    assert len(frame) == 2 * len(bt.implementations()) * 2
    for _ in range(2):
        paths = bt.write_files(frame, args)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert "-2t-" in paths[0].name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cells", "lsmt"], "cell 'lsmt' is not known"),
        (["--table-batches", "1,x"], "--table-batches '1,x' is not a list of positive integers"),
        (["--table-hidden", "0"], "--table-hidden '0' is not a list of positive integers"),
        (["--table-steps", "0"], "--table-steps must be at least 1"),
        (["--same-process"], "--table times each side in its own process"),
    ],
)
def test_bad_table_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["bench", "--table", str(tmp_path / "t"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqbench: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()  # checked before anything is made


def test_an_unwritable_table_place_fails_before_any_timing(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["bench", "--table", str(tmp_path / "file"), *TINY]) == 2
    assert "cannot write the table under" in capsys.readouterr().err


def test_slug_of_a_cpu_name():
    assert bt.slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-xeon-cpu-2-20ghz"
    assert bt.slug("AMD EPYC 7B13 64-Core Processor") == "amd-epyc-7b13-64-core-processor"
