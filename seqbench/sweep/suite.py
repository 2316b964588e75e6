"""Suite files: parse, check and expand a TOML suite into unique, validated RunConfigs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .checks import check_document, check_models, key_line, key_of_error
from .source import SuiteSource


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    configs: tuple  # validated RunConfigs, unique run ids, in file order
    duplicates: int = 0  # configs dropped because an earlier one had the same run id

    def run_ids(self) -> list[str]:
        from ..results import run_id

        return [run_id(c.identity()) for c in self.configs]


def resolve_suite_path(name) -> Path:
    """A path as given, or a bare name looked up as suites/NAME.toml (here, then the repo)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        for root in (Path("suites"), Path(__file__).resolve().parents[2] / "suites"):
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
    source = SuiteSource(path, text)
    doc = source.parse()
    check_document(source, doc)
    configs, origins, duplicates = [], {}, 0
    from ..results import run_id

    for block, entries in _blocks(doc):
        for entry in entries:
            cfg = _config(source, doc, block, entry)
            rid = run_id(cfg.identity())
            if rid in origins:
                duplicates += 1
                continue
            origins[rid] = block
            configs.append(cfg)
    check_models(source, doc, configs, origins)
    return Suite(
        path=path,
        name=str(doc.get("name", path.stem)),
        description=str(doc.get("description", "")),
        configs=tuple(configs),
        duplicates=duplicates,
    )


def _blocks(doc: dict):
    """(block, entries): each entry a dict of scalars (the grid crossed, lists expanded).

    [defaults] and [grid] are shared by every model of the suite: a field that an entry's
    model ignores (ModelKind.ignores, e.g. lr for a fitted model) is dropped when it comes
    from there, and is an error (in RunConfig.validated) when the entry's [[runs]] sets it."""
    defaults, grid = doc.get("defaults", {}), doc.get("grid", {})
    runs = doc.get("runs") or [None]
    for i, run in enumerate(runs):
        block = ("runs", i) if run is not None else ("grid", 0)
        axes = {k: v for k, v in grid.items() if run is None or k not in run}
        axes.update({k: v if isinstance(v, list) else [v] for k, v in (run or {}).items()})
        names = list(axes)
        entries = [
            _shared_dropped({**defaults, **dict(zip(names, combo, strict=True))}, run or {})
            for combo in itertools.product(*(axes[n] for n in names))
        ]
        yield block, entries


def _shared_dropped(entry: dict, own: dict) -> dict:
    from ..config import RunConfig
    from ..models import MODELS

    kind = MODELS.get(entry.get("model", RunConfig.model))
    if kind is None:
        return entry  # an unknown model: RunConfig says so
    return {k: v for k, v in entry.items() if k in own or k not in kind.ignores}


def _config(source: SuiteSource, doc: dict, block: tuple, entry: dict):
    from ..config import RunConfig

    try:
        return RunConfig.from_dict(entry)
    except ConfigError as e:
        summary = ", ".join(f"{k}={entry[k]}" for k in ("task", "model", "seq_len") if k in entry)
        key = key_of_error(str(e), entry)
        line = (
            key_line(source, doc, block, key) if key else source.line_of(block[0], None, block[1])
        )
        raise source.error(line, f"{source.where(block)} ({summary}): {e}") from None
