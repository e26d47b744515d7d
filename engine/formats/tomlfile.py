"""Read TOML files and remember where each key was written, for error messages with line numbers.

`tomli` parses the data but gives no positions; `_PositionScanner` walks the (already valid) text a
second time and records the 1-based line of every key, table header, array-of-tables entry and
array element. Nothing read here is ever executed.

Key paths are tuples of table keys and array indices, e.g. ("sessions", "D11", "tests", 2, "obsids").
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import tomli

KeyPath = tuple  # tuple[str | int, ...]

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def format_key_path(key_path: Iterable[str | int]) -> str:
    """("sessions", "D11", "tests", 2, "obsids") -> 'sessions.D11.tests[2].obsids'."""
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        shown = part if _BARE_KEY_RE.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        text += f".{shown}" if text else shown
    return text


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file, located as precisely as we can."""

    path: str | Path
    line: int | None
    key: str | tuple  # a formatted key ("sessions.D11.tests[2]") or a key path tuple
    message: str
    column: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.key, tuple):
            object.__setattr__(self, "key", format_key_path(self.key))

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ValueError):
    """All problems found in a config, reported together (one per line)."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@dataclass
class TomlDocument:
    """Parsed TOML data plus the line where each key path was defined."""

    data: dict
    path: Path
    lines: dict = field(default_factory=dict, repr=False)  # key path tuple -> 1-based line

    def line_of(self, key_path: Iterable[str | int]) -> int | None:
        """Line where `key_path` is defined (key, table header, array entry), or None."""
        return self.lines.get(tuple(key_path))

    def nearest_line(self, key_path: Iterable[str | int]) -> int | None:
        """Line of `key_path` or, if it is absent (e.g. a missing key), of its closest parent."""
        parts = tuple(key_path)
        while parts:
            line = self.lines.get(parts)
            if line is not None:
                return line
            parts = parts[:-1]
        return None


def load_toml(path: str | Path) -> TomlDocument:
    """Parse a TOML file; any read or syntax error becomes a ConfigError naming file, line, column."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, None, "", f"cannot read file: {exc.strerror or exc}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(path, line, "", "file is not UTF-8 text")])
    return parse_toml_text(text, path)


def parse_toml_text(text: str, path: str | Path = "<string>") -> TomlDocument:
    """As load_toml, for text already in memory (`path` only names it in messages)."""
    path = Path(path)
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        message = getattr(exc, "msg", None) or re.sub(r"\s*\(at line \d+, column \d+\)$", "", str(exc))
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        if line is None:  # older tomli: positions only in the message
            found = re.search(r"at line (\d+), column (\d+)", str(exc))
            if found:
                line, column = int(found.group(1)), int(found.group(2))
        raise ConfigError([ConfigProblem(path, line, "", f"TOML syntax error: {message}", column)])
    return TomlDocument(data=data, path=path, lines=_PositionScanner(text).scan())


class _ScanError(Exception):
    pass


class _PositionScanner:
    """A tolerant TOML walker that records positions only (tomli has already validated the text)."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self._aot_last_index: dict[KeyPath, int] = {}  # array-of-tables path -> index of last entry

    # -- driving loop -----------------------------------------------------------------------------
    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        try:
            while True:
                self._skip_space(newlines=True)
                if self.pos >= len(self.text):
                    break
                if self.text.startswith("[[", self.pos):
                    table = self._array_table_header()
                elif self.text[self.pos] == "[":
                    table = self._table_header()
                else:
                    self._key_value(table)
        except (_ScanError, IndexError):
            pass  # positions are a convenience: keep what was found rather than fail the load
        return self.lines

    # -- headers and key/values -----------------------------------------------------------------
    def _table_header(self) -> KeyPath:
        line = self._line()
        self.pos += 1
        keys = self._dotted_key()
        self._expect("]")
        path = self._resolve(keys, line)
        self.lines[path] = line  # explicit header wins over an earlier implicit mention
        return path

    def _array_table_header(self) -> KeyPath:
        line = self._line()
        self.pos += 2
        keys = self._dotted_key()
        self._expect("]]")
        parent = self._resolve(keys[:-1], line)
        array_path = parent + (keys[-1],)
        self.lines.setdefault(array_path, line)
        index = self._aot_last_index.get(array_path, -1) + 1
        self._aot_last_index[array_path] = index
        self.lines[array_path + (index,)] = line
        return array_path + (index,)

    def _resolve(self, keys: list[str], line: int) -> KeyPath:
        """Key path of a header, stepping into the last entry of any array of tables on the way."""
        path: KeyPath = ()
        for key in keys:
            path += (key,)
            self.lines.setdefault(path, line)
            if path in self._aot_last_index:
                path += (self._aot_last_index[path],)
        return path

    def _key_value(self, table: KeyPath) -> None:
        line = self._line()
        keys = self._dotted_key()
        self._expect("=")
        path = table
        for key in keys:
            path += (key,)
            self.lines.setdefault(path, line)
        self._skip_space()
        self._value(path)

    def _dotted_key(self) -> list[str]:
        keys = []
        while True:
            self._skip_space()
            keys.append(self._simple_key())
            self._skip_space()
            if self._peek() != ".":
                return keys
            self.pos += 1

    def _simple_key(self) -> str:
        char = self._peek()
        if char in ('"', "'"):
            start = self.pos
            self._string()
            return tomli.loads("k = " + self.text[start:self.pos])["k"]
        match = _BARE_KEY_RE.match(self.text, self.pos)
        if not match:
            raise _ScanError(f"key expected at offset {self.pos}")
        self.pos = match.end()
        return match.group()

    # -- values ---------------------------------------------------------------------------------
    def _value(self, path: KeyPath) -> None:
        char = self._peek()
        if char in ('"', "'"):
            self._string()
        elif char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        else:  # number, bool, date-time: runs to the next delimiter
            match = re.compile(r"[^,\]\}#\n]*").match(self.text, self.pos)
            self.pos = match.end()

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip_space(newlines=True)
            if self._peek() == "]":
                self.pos += 1
                return
            self.lines[path + (index,)] = self._line()
            self._value(path + (index,))
            index += 1
            self._skip_space(newlines=True)
            if self._peek() == ",":
                self.pos += 1

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self._skip_space(newlines=True)  # newlines: TOML 1.1 allows them, harmless otherwise
            if self._peek() == "}":
                self.pos += 1
                return
            self._key_value(path)
            self._skip_space(newlines=True)
            if self._peek() == ",":
                self.pos += 1

    def _string(self) -> None:
        quote = self.text[self.pos]
        if self.text.startswith(quote * 3, self.pos):
            start = self.pos + 3
            end = self.text.index(quote * 3, start) if quote == "'" else self._basic_end(start, multi=True)
            run = 3
            while self.text.startswith(quote, end + run) and run < 5:
                run += 1  # up to two quotes of content may sit just before the closing three
            self.pos = end + run
        elif quote == "'":
            self.pos = self.text.index("'", self.pos + 1) + 1
        else:
            self.pos = self._basic_end(self.pos + 1, multi=False) + 1

    def _basic_end(self, pos: int, multi: bool) -> int:
        """Offset of the closing quote(s) of a basic string, skipping backslash escapes."""
        while True:
            char = self.text[pos]
            if char == "\\":
                pos += 2
            elif char == '"' and (not multi or self.text.startswith('"""', pos)):
                return pos
            else:
                pos += 1

    # -- low level ------------------------------------------------------------------------------
    def _skip_space(self, newlines: bool = False) -> None:
        blanks = " \t\r\n" if newlines else " \t"
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in blanks:
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
                if not newlines:
                    return
            else:
                return

    def _expect(self, token: str) -> None:
        self._skip_space()
        if not self.text.startswith(token, self.pos):
            raise _ScanError(f"{token!r} expected at offset {self.pos}")
        self.pos += len(token)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _line(self) -> int:
        return bisect.bisect_right(self._line_starts, self.pos)

