"""A suite file's text, kept to say on which line a key stands (tomllib gives no positions)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError


class SuiteSource:
    """The suite's text, to say on which line a key stands (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, path: Path, text: str):
        self.path, self.text, self.lines = path, text, text.splitlines()
        # (section or None, [[runs]] index, first line, last line); lines count from 1
        self.spans, section, index, first, runs = [], None, 0, 1, -1
        for number, line in enumerate(self.lines, 1):
            m = self._HEADER.match(line)
            if not m:
                continue
            self.spans.append((section, index, first, number - 1))
            name = m.group(2).split(".")[0].strip().strip("\"'")
            runs += m.group(1) == "[[" and name == "runs"
            section, index, first = name, (runs if name == "runs" else 0), number
        self.spans.append((section, index, first, len(self.lines)))

    def parse(self) -> dict:
        import tomllib

        try:
            return tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = re.search(r"\(at line (\d+), column \d+\)", msg)
            line = int(m.group(1)) if m else max(len(self.lines), 1)
            msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
            raise self.error(line, f"TOML syntax error: {msg}") from None

    def error(self, line: int, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{line}: {message}")

    def line_of(self, section, key=None, index=0) -> int:
        """The line where ``key`` is set in ``section`` (None: top level), else its header's."""
        spans = [s for s in self.spans if s[0] == section and s[1] == index]
        if key is not None:
            pattern = re.compile(rf"(^|[\s{{,.\[])[\"']?{re.escape(str(key))}[\"']?\s*[=.\]]")
            for _, _, first, last in spans:
                for number in range(first, last + 1):
                    if pattern.search(self.lines[number - 1].split("#")[0]):
                        return number
        for _, _, first, _ in spans:
            if section is None or self._HEADER.match(self.lines[first - 1]):
                return first
        return 1

    def where(self, block: tuple) -> str:
        section, index = block
        return f"[[runs]] #{index + 1}" if section == "runs" else f"[{section}]"
