"""Rebuild python-stdlib.txt.gz from a CPython install (run once; nothing runs this at run time).

Selection, fixed and deterministic: the top-level modules Lib/*.py of the running CPython,
sorted by file name (byte order), each kept only if every byte is ASCII and it has at most
MAX_FILE_BYTES bytes, concatenated as they are (``cat``: no separators added) until the
total first reaches TARGET_BYTES. The file list, each file's SHA-256 and offset, and the
Python version go to PROVENANCE.md; the text is stored gzip-compressed with mtime 0 (the
same bytes each time).

    python seqbench/data/corpus/build.py      # under CPython 3.11.7 gives the shipped file
"""

from __future__ import annotations

import gzip
import hashlib
import platform
import sys
import sysconfig
from pathlib import Path

TARGET_BYTES = 2_000_000
MAX_FILE_BYTES = 50_000  # no one module (a table of locale aliases, say) dominates a split
HERE = Path(__file__).resolve().parent
CORPUS = "python-stdlib.txt.gz"


def select(lib: Path, target: int = TARGET_BYTES) -> list[tuple[str, bytes]]:
    """(name, bytes) of the chosen modules, in corpus order."""
    chosen, total = [], 0
    for path in sorted(lib.glob("*.py"), key=lambda p: p.name.encode()):
        data = path.read_bytes()
        if not data.isascii() or len(data) > MAX_FILE_BYTES:
            continue
        chosen.append((path.name, data))
        total += len(data)
        if total >= target:
            break
    return chosen


def build(out: Path = HERE) -> str:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = select(lib)
    text = b"".join(data for _, data in files)
    (out / CORPUS).write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    digest = hashlib.sha256(text).hexdigest()
    rows, offset = [], 0
    for name, data in files:
        rows.append(f"| Lib/{name} | {offset} | {len(data)} | {hashlib.sha256(data).hexdigest()} |")
        offset += len(data)
    version = f"{platform.python_implementation()} {platform.python_version()}"
    (out / "PROVENANCE.md").write_text(_provenance(version, len(files), len(text), digest, rows))
    return digest


def _provenance(version, n, size, digest, rows) -> str:
    return (
        f"""# The char-lm corpus: Python standard-library sources

`{CORPUS}` (gzip, mtime 0) holds {size:,} bytes of ASCII program text:
{n} top-level modules of the standard library (`Lib/*.py`) of {version}
(python.org source release, built by pyenv), concatenated in the order below with nothing
added between them.

- SHA-256 of the uncompressed text:
  `{digest}` (tested: tests/test_char_lm.py).
- Selection: every top-level `Lib/*.py`, sorted by file name, kept when all of its bytes
  are ASCII and it has at most {MAX_FILE_BYTES:,} bytes (so that no one module, such as
  locale.py's table of aliases, dominates a split), until the total first reaches
  {TARGET_BYTES:,} bytes. `build.py` beside this file rebuilds it:
  `python seqbench/data/corpus/build.py` under the same Python version.
- License: these files are part of Python and are distributed under the Python Software
  Foundation License Version 2; `LICENSE-PSF.txt` beside this file is CPython's LICENSE.txt,
  copied verbatim from the same install, whose notice is retained here: "Copyright (c) 2001,
  2002, 2003, 2004, 2005, 2006, 2007, 2008, 2009, 2010, 2011, 2012, 2013, 2014, 2015, 2016,
  2017, 2018, 2019, 2020, 2021, 2022, 2023 Python Software Foundation; All Rights Reserved".
- Why program text: Karpathy's char-rnn learned the Linux sources; this is the same kind of
  text (indentation, brackets that must close, names reused far apart) under a permissive
  license, fixed in the repository, nothing downloaded at run time.

The held-out split of task char-lm is the tail of this text (`test_fraction`, 5% by
default): the last modules of the list below.

| file | offset | bytes | SHA-256 |
|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )


if __name__ == "__main__":
    print(build(), file=sys.stdout)
