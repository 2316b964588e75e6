"""char-lm: the shipped corpus, char-rnn's stream batching and state carry, bits per character,
the unigram baseline, saved weights, sampling, and bad input. Tiny shapes; float64 numba LSTM
and GRU kernels only (compiled once, cached on disk)."""

import gzip
import hashlib
import importlib.util
import math
import platform
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from seqbench import sampling
from seqbench.cli import main
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.results.storage import read_weights
from seqbench.tasks import make_task
from seqbench.tasks.base import softmax_cross_entropy
from seqbench.tasks.char_lm import CORPUS_SHA256, corpus_bytes
from seqbench.train import Trainer, run_and_save

CORPUS_DIR = Path(__file__).resolve().parents[1] / "seqbench" / "data" / "corpus"
TEXT = "the cat sat on the mat; the rat ate the hat.\n" * 40  # 1800 characters
TINY = dict(hidden_size=6, batch_size=3, seq_len=5, dtype="float64", eval_every=2,
            profile_every=1000)  # fmt: skip


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def _cfg(path, **kw) -> RunConfig:
    opts = {"task_options": {"path": str(path)}}
    return RunConfig(task="char-lm", **{"model": "lstm", **TINY, **opts, **kw}).validated()


# ---------------------------------------------------------------- corpus


def test_corpus_checksum_size_license_and_provenance():
    text = corpus_bytes()
    assert hashlib.sha256(text).hexdigest() == CORPUS_SHA256
    assert 1_000_000 <= len(text) <= 3_000_000 and text.isascii()
    packed = (CORPUS_DIR / "python-stdlib.txt.gz").read_bytes()
    assert gzip.decompress(packed) == text
    assert CORPUS_SHA256 in (CORPUS_DIR / "PROVENANCE.md").read_text()
    assert (
        "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2"
        in (CORPUS_DIR / "LICENSE-PSF.txt").read_text()
    )


@pytest.mark.skipif(
    platform.python_version() != "3.11.7", reason="the corpus was cut from CPython 3.11.7"
)
def test_corpus_rebuilds_from_this_python():
    spec = importlib.util.spec_from_file_location("build_corpus", CORPUS_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    lib = Path(sysconfig.get_paths()["stdlib"])
    assert b"".join(data for _, data in build.select(lib)) == corpus_bytes()


def test_shipped_corpus_task():
    task = make_task("char-lm")
    assert task.input_size == task.output_size == 96 and not task.unknown
    assert task.baseline / math.log(2) == pytest.approx(4.5996, abs=1e-4)
    assert len(task.test_ids) == round(0.05 * len(corpus_bytes()))


# ---------------------------------------------------------------- batching


def test_streams_are_contiguous_and_each_chunk_continues_the_last(text_file):
    task = make_task("char-lm", 5, path=str(text_file))
    B, T = 3, 5
    L = (len(task.train_ids) - 1) // B
    chunks = L // T
    rng = np.random.default_rng(0)
    batches = [task.generate(rng, B) for _ in range(chunks + 1)]
    for t, b in enumerate(batches[:chunks]):
        assert b.continues == (t > 0)
        for s in range(B):
            start = s * L + t * T
            assert np.array_equal(b.x[s].argmax(-1), task.train_ids[start : start + T])
            assert np.array_equal(b.y[s], task.train_ids[start + 1 : start + T + 1])
        if t:
            assert np.array_equal(b.x[:, 0].argmax(-1), batches[t - 1].y[:, -1])
    again = batches[chunks]  # a new epoch: the first chunk again, state reset
    assert not again.continues and np.array_equal(again.x, batches[0].x)


def test_held_out_pass_covers_the_tail_in_streams(text_file):
    task = make_task("char-lm", 5, path=str(text_file))
    held = list(task.held_out_batches(3))
    M = len(task.test_ids)
    assert M == 90 and len(held) == ((M - 1) // 3) // 5
    assert [b.continues for b in held] == [False] + [True] * (len(held) - 1)
    assert np.array_equal(np.concatenate([b.y[0] for b in held]), task.test_ids[1 : 1 + 5 * 5])


# ---------------------------------------------------------------- state carry


@pytest.mark.parametrize("model, layers", [("lstm", 2), ("gru", 1)])
def test_chunks_with_carried_state_equal_one_unchunked_pass(text_file, model, layers):
    tr = Trainer(_cfg(text_file, model=model, num_layers=layers))
    b1, b2 = tr.task.generate(None, 3), tr.task.generate(None, 3)
    assert not b1.continues and b2.continues
    y_full, _ = tr.model.forward(np.concatenate([b1.x, b2.x], axis=1))
    head = tr.head.forward(y_full)
    # the training loop: chunk 2 starts from chunk 1's final state
    l1, *_ = tr.loss_and_grads(b1)
    l2, *_ = tr.loss_and_grads(b2)
    assert l1 == pytest.approx(softmax_cross_entropy(head[:, :5], b1.y)[0], rel=1e-13)
    assert l2 == pytest.approx(softmax_cross_entropy(head[:, 5:], b2.y)[0], rel=1e-13)
    # a chunk that does not continue starts from zeros
    b2.continues = False
    l2_reset, *_ = tr.loss_and_grads(b2)
    assert abs(l2_reset - l2) > 1e-6


def test_evaluation_is_one_pass_over_the_held_out_streams(text_file):
    tr = Trainer(_cfg(text_file))
    held = list(tr.task.held_out_batches(3))
    x = np.concatenate([b.x for b in held], axis=1)
    y = np.concatenate([b.y for b in held], axis=1)
    out = tr.head.forward(tr.model.forward(x)[0])
    ev = tr.evaluate()
    assert ev.loss == pytest.approx(softmax_cross_entropy(out, y)[0], rel=1e-13)
    assert ev.metrics["bpc"] == pytest.approx(ev.loss / math.log(2), rel=1e-13)
    assert ev.sequences == 3 * len(held)


# ---------------------------------------------------------------- bits and baseline


def test_bits_per_character_by_hand(text_file):
    task = make_task("char-lm", 5, path=str(text_file))
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]]))
    y = np.array([[0, 1]])  # -log2 0.5 = 1 bit, -log2 0.25 = 2 bits
    loss, _ = task.loss(logits, y)
    assert loss == pytest.approx(1.5 * math.log(2), rel=1e-14)  # nats
    assert task.metrics(logits, y)["bpc"] == pytest.approx(1.5, rel=1e-14)


def test_unigram_baseline_by_hand(tmp_path):
    path = tmp_path / "ab.txt"
    path.write_text("aaab" * 50)  # 200 characters; the last 40 held out
    task = make_task("char-lm", 5, path=str(path), test_fraction=0.2)
    assert len(task.train_ids) == 160 and task.input_size == 2
    bits = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))  # 0.8113
    assert task.baseline == pytest.approx(bits * math.log(2), rel=1e-14)
    assert task.solved(0.49 * task.baseline, {}) and not task.solved(0.51 * task.baseline, {})


def test_held_out_characters_outside_the_vocabulary_get_one_class(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("ab" * 95 + "xyzxyzxyzx", encoding="utf-8")
    task = make_task("char-lm", 5, path=str(path))
    assert task.unknown and task.input_size == 3
    assert set(task.test_ids[-10:].tolist()) == {2}


def test_console_says_nats_and_bits():
    from seqbench.console import evaluation_line, verdict_lines

    rec = dict(task="char-lm", model="lstm", seq_len=50, hidden_size=8, num_layers=1,
               backend="numba", dtype="float32", optimizer="adam", lr=0.01, clip="norm:1",
               batch_size=4, steps=1,
               status="finished", solved=False, solved_step=None, final_loss=math.log(2) * 2,
               baseline_loss=math.log(2) * 4, eval_loss_se=0.01, eval_sequences=10,
               metrics={"accuracy": 0.5, "bpc": 2.0}, steps_run=1, train_seconds=1.0)  # fmt: skip
    text = "\n".join(verdict_lines(rec))
    assert "eval loss 1.386 nats/char" in text and "vs memoryless baseline 2.773 nats/char" in text
    assert "in bits 2 vs 4 bits/char, perplexity 4 vs 16" in text
    info = {"eval_loss": math.log(2), "baseline": math.log(2) * 4, "eval_step": 1}
    line = evaluation_line(1, 2, 1.0, info, "nats/char")
    assert "(eval 1.0000 vs baseline 4.0000 bits/char)" in line


# ---------------------------------------------------------------- weights and sampling


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT)
    out = tmp_path_factory.mktemp("res")
    record = run_and_save(_cfg(path, num_layers=2, steps=4), out)
    return out, record["run_id"]


def test_weights_are_saved_under_torch_names_and_load_back(trained):
    out, rid = trained
    w = read_weights(out, rid)
    s = sampling.load(rid, out, "numpy")
    assert set(s.model.state_dict()) == {f"{k}_l{i}" for k in ("weight_ih", "weight_hh",
                                         "bias_ih", "bias_hh") for i in (0, 1)}  # fmt: skip
    for k, v in s.model.state_dict().items():
        assert np.array_equal(v, w[k])
    assert w["head.weight"].shape == (len(w["vocab"]), 6)
    assert "".join(map(chr, w["vocab"])) == "".join(sorted(set(TEXT)))


def test_sampling_is_deterministic_and_backends_agree_in_float64(trained):
    out, rid = trained
    numba = sampling.load(rid, out, "numba")
    numpy = sampling.load(rid, out, "numpy")
    a = numba.sample("the ", temperature=0.8, length=60, seed=3)
    assert a.startswith("the ") and len(a) == 64 and set(a) <= set(TEXT)
    assert numba.sample("the ", temperature=0.8, length=60, seed=3) == a
    assert numpy.sample("the ", temperature=0.8, length=60, seed=3) == a
    assert numba.sample("the ", temperature=0.8, length=60, seed=4) != a


def test_sample_command_prints_text(trained, capsys):
    out, rid = trained
    assert main(["sample", rid, "--out", str(out), "--length", "30", "--prime", "cat"]) == 0
    got = capsys.readouterr()
    assert got.out.startswith("cat") and len(got.out) == 34  # prime, 30 drawn, a newline
    assert f"run {rid}: char-lm lstm H=6 x2, 30 characters at temperature 1" in got.err


# ---------------------------------------------------------------- bad input


def _refused(argv, capsys, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqbench: error: ") and err.count("\n") == 1, err
    assert words in err, err


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "looks binary (it holds NUL bytes)"),
        (b"caf\xe9 au lait " * 20, "is not UTF-8 (byte 0xe9 at offset 3)"),
        (b"tiny", "too short for 64 streams"),
    ],
    ids=["missing", "empty", "binary", "latin-1", "too-short"],
)
def test_bad_text_file_is_one_line_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "in.txt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "res"
    argv = ["run", "char-lm", "--task-opt", f"path={path}", "--quiet", "--out", str(out)]
    _refused(argv, capsys, words)
    assert not out.exists()


def test_bytes_encoding_reads_what_utf8_refuses(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait " * 20)
    task = make_task("char-lm", 5, path=str(path), encoding="bytes")
    assert 0xE9 in task.vocab.tolist()


def test_bidirectional_is_refused(text_file):
    with pytest.raises(ConfigError, match="bidirectional model would read the answer"):
        _cfg(text_file, bidirectional=True)


BAD_SAMPLE_INPUT = {  # test id: (arguments after the run id, words of the one-line error)
    "temperature-0": (["--temperature", "0"], "--temperature must be > 0"),
    "temperature-negative": (["--temperature", "-1"], "--temperature must be > 0"),
    "temperature-nan": (["--temperature", "nan"], "--temperature must be a finite number"),
    "length-0": (["--length", "0"], "--length must be an integer in [1"),
    "prime": (
        ["--prime", "cat\u00e9"],
        "1 character(s) outside the run's vocabulary of 14: '\u00e9'",
    ),
}


@pytest.mark.parametrize("extra, words", BAD_SAMPLE_INPUT.values(), ids=list(BAD_SAMPLE_INPUT))
def test_bad_sample_input_is_one_line_exit_2(trained, capsys, extra, words):
    out, rid = trained
    _refused(["sample", rid, "--out", str(out), *extra], capsys, words)


def test_sample_unknown_run_and_run_without_weights(trained, tmp_path, capsys):
    out, rid = trained
    _refused(["sample", "0123456789ab", "--out", str(out)], capsys, "no run 0123456789ab")
    rec = run_and_save(RunConfig(task="adding", model="gru", seq_len=4, hidden_size=4,
                                 batch_size=2, steps=1, dtype="float64"), tmp_path)  # fmt: skip
    assert read_weights(tmp_path, rec["run_id"]) is None
    _refused(["sample", rec["run_id"], "--out", str(tmp_path)], capsys, "kept no weights")


# ---------------------------------------------------------------- torch, where installed


def test_one_chunk_loss_equals_torch(text_file):
    torch = pytest.importorskip("torch")
    tr = Trainer(_cfg(text_file, num_layers=2))
    batch = tr.task.generate(None, 3)
    loss, *_ = tr.loss_and_grads(batch)
    V = tr.task.input_size
    lstm = torch.nn.LSTM(V, 6, num_layers=2, batch_first=True, dtype=torch.float64)
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in tr.model.state_dict().items()})
    head = torch.nn.Linear(6, V, dtype=torch.float64)
    head.weight.data = torch.from_numpy(tr.head.params["head.weight"])
    head.bias.data = torch.from_numpy(tr.head.params["head.bias"])
    with torch.no_grad():
        logits = head(lstm(torch.from_numpy(batch.x))[0])
    ref = torch.nn.functional.cross_entropy(
        logits.reshape(-1, V), torch.from_numpy(batch.y).reshape(-1)
    )
    assert loss == pytest.approx(float(ref), rel=1e-12)


# ---------------------------------------------------------------- the reproduction


def test_karpathy_widths_match_parameter_counts():
    from seqbench.models import build_model
    from seqbench.reproduce.karpathy2015_char import matched_sizes, parameters, suite

    for lstm_hidden, tolerance in ((8, 0.03), (64, 0.01), (128, 0.01)):
        for layers in (1, 2):
            sizes = matched_sizes(lstm_hidden, layers)
            counts = {c: parameters(c, h, layers) for c, h in sizes.items()}
            for cell, h in sizes.items():  # the cell's own count, plus the 96 x H + 96 head
                model = build_model(cell, 96, h, num_layers=layers, backend="numpy")
                assert model.parameters + 96 * h + 96 == counts[cell]
            assert max(abs(n / counts["lstm"] - 1) for n in counts.values()) <= tolerance
    quick = suite("quick", 3)
    assert len(quick) == 18 and {c.steps for c in quick} == {1500}
    assert not any(c.stop_when_solved for c in quick)


def test_karpathy_smoke_writes_claims_figure_and_samples(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "k"
    args = ["reproduce", "karpathy2015-char", "--smoke", "--workers", "1", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    claims = pd.read_parquet(out / "claims.parquet")
    assert sorted(claims["case"]) == ["layers=1", "layers=1", "layers=2", "layers=2"]
    assert (out / "char-bpc.png").is_file() and (out / "samples.png").is_file()
    samples = (out / "samples.txt").read_text()
    assert samples.count("== ") == 6 and samples.count("\ndef ") == 6
