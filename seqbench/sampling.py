"""``seqbench sample RUN_ID``: text from a trained char-lm run, one character at a time.

The run's weights (out/weights/<run_id>.npz: torch's state_dict names, head.weight and
head.bias, and the vocabulary) are loaded into a float64 model on the chosen backend; the
prime is read through the network, then each next character is drawn from
softmax(logits / temperature) with one uniform number from np.random.default_rng(seed) per
character, and fed back. Same run, prime, temperature, length and seed: the same text, and
in float64 the same text from the numba and numpy backends (tests/test_char_lm.py).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError

DEFAULT_LENGTH = 500
MAX_LENGTH = 1_000_000


@dataclass
class Sampler:
    """A trained char-lm run, ready to write: model (float64), head, vocabulary."""

    record: dict
    model: object
    head_weight: np.ndarray  # (V, H)
    head_bias: np.ndarray  # (V,)
    vocab: np.ndarray  # code points (utf-8) or byte values (bytes), sorted
    unknown: bool  # the extra class after the vocabulary (never in a training target)
    encoding: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + self.unknown

    def encode_prime(self, prime: str) -> np.ndarray:
        codes = list(prime.encode("utf-8")) if self.encoding == "bytes" else [ord(c) for c in prime]
        codes = np.asarray(codes, dtype=np.int64)
        outside = sorted({int(c) for c in codes if c not in set(self.vocab.tolist())})
        if outside:
            from .tasks.char_lm import symbol_text

            shown = ", ".join(repr(symbol_text([c], self.encoding)) for c in outside[:5])
            raise ConfigError(
                f"--prime has {len(outside)} character(s) outside the run's vocabulary of "
                f"{len(self.vocab)}: {shown}"
            )
        return np.searchsorted(self.vocab, codes)

    def default_prime(self) -> str:
        """A newline where the text has one (a fresh line of the corpus), else its first symbol."""
        from .tasks.char_lm import symbol_text

        nl = 10 in set(self.vocab.tolist())
        return "\n" if nl else symbol_text(self.vocab[:1], self.encoding)

    def _logits(self, ids, state):
        x = np.zeros((1, len(ids), self.vocab_size))
        x[0, np.arange(len(ids)), ids] = 1.0
        y, tape = self.model.forward(x, state)
        return y[0, -1] @ self.head_weight.T + self.head_bias, tape.state_n

    def sample(self, prime: str | None = None, temperature: float = 1.0,
               length: int = DEFAULT_LENGTH, seed: int = 0) -> str:  # fmt: skip
        """prime + ``length`` characters drawn from the model."""
        from .tasks.char_lm import symbol_text

        check_sampling(temperature, length, seed)
        prime = self.default_prime() if prime is None or prime == "" else prime
        ids = self.encode_prime(prime)
        rng = np.random.default_rng(seed)
        logits, state = self._logits(ids, None)
        drawn = []
        for _ in range(length):
            z = logits / temperature
            p = np.exp(z - z.max())
            cdf = np.cumsum(p)
            k = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(p) - 1)
            drawn.append(k)
            logits, state = self._logits([k], state)
        return prime + "".join(self._symbol(k, symbol_text) for k in drawn)

    def _symbol(self, k, symbol_text) -> str:
        return (
            "\ufffd" if k >= len(self.vocab) else symbol_text(self.vocab[k : k + 1], self.encoding)
        )


def check_sampling(temperature, length, seed) -> None:
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ConfigError(f"--temperature must be a finite number > 0, got {temperature!r}")
    if temperature <= 0:
        raise ConfigError(
            f"--temperature must be > 0 (1: the model's own distribution; lower: more "
            f"conservative), got {temperature:g}"
        )
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise ConfigError(f"--length must be an integer in [1, {MAX_LENGTH}], got {length!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")


def load(run_id: str, out="results", backend: str = "numba") -> Sampler:
    """The run ``run_id`` under ``out`` as a float64 Sampler on ``backend``."""
    import pandas as pd

    from .models import MODELS, build_model
    from .results import RUNS
    from .results.storage import read_weights

    if not isinstance(run_id, str) or not re.fullmatch(r"\w[\w.-]*", run_id):
        raise ConfigError(f"run id must be a plain name like 5b596098bb54, got {run_id!r}")
    path = Path(out) / RUNS / f"{run_id}.parquet"
    if not path.is_file():
        raise ConfigError(f"no run {run_id} under {out}/ (seqbench results --out {out} lists them)")
    record = pd.read_parquet(path).iloc[0].to_dict()
    weights = read_weights(out, run_id)
    if weights is None or "vocab" not in weights:
        raise ConfigError(
            f"run {run_id} ({record['task']}) kept no weights to sample from: char-lm runs keep "
            "theirs (out/weights/RUN_ID.npz)"
        )
    kind = MODELS.get(record["model"])
    if kind is None or kind.fitted:
        raise ConfigError(f"run {run_id}'s model {record['model']!r} cannot be sampled here")
    declared = {o.name for o in kind.options}
    options = {k: v for k, v in json.loads(record["options"] or "{}").items() if k in declared}
    unknown = bool(weights["vocab_unknown"])
    vocab = weights["vocab"]
    model = build_model(record["model"], len(vocab) + unknown, int(record["hidden_size"]),
                        num_layers=int(record["num_layers"]), dtype="float64", backend=backend,
                        **options)  # fmt: skip
    model.load_state_dict({k: weights[k] for k in model.state_dict()})
    return Sampler(record, model, weights["head.weight"].astype(np.float64),
                   weights["head.bias"].astype(np.float64), vocab, unknown,
                   str(weights["encoding"]))  # fmt: skip


# ---------------------------------------------------------------- the command


def add_arguments(p) -> None:
    p.add_argument("run_id", help="a char-lm run's id (seqbench results lists them)")
    p.add_argument("--prime", default=None, help="text to start from (default: a newline)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="> 0; 1: the model's distribution, lower: more conservative")  # fmt: skip
    p.add_argument("--length", type=int, default=DEFAULT_LENGTH, help="characters to draw")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--backend", default="numba", help="numba, numpy or cuda (float64 always)")
    p.add_argument("--out", default="results", help="results directory holding the run")


def main(a) -> int:
    from .backends import check_backend

    check_sampling(a.temperature, a.length, a.seed)
    check_backend(a.backend)
    sampler = load(a.run_id, a.out, a.backend)
    sampler.encode_prime(a.prime or "")  # a bad prime: refused before anything is printed
    r = sampler.record
    print(f"run {a.run_id}: {r['task']} {r['model']} H={r['hidden_size']} x{r['num_layers']}, "
          f"{a.length} characters at temperature {a.temperature:g}, seed {a.seed} "
          f"({a.backend}, float64)", file=sys.stderr, flush=True)  # fmt: skip
    text = sampler.sample(a.prime, a.temperature, a.length, a.seed)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
