"""Read TOML files and remember where each key was written, for error messages with line numbers.

`tomli` parses the data but gives no positions; `_PositionScanner` walks the (already valid) text a
second time and records the 1-based line of every key, table header, array-of-tables entry and
array element. Nothing read here is ever executed.

Key paths are tuples of table keys and array indices, e.g. ("sessions", "D11", "tests", 2, "obsids").

`TomlChecker` is the one checker of every config file (campaign, scripts and sessions inputs,
monitor settings, HK limits): each keeps its own schema and reads values through its typed
getters, which record every problem with file, line, key path and what was expected.
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, Iterable

import tomli

KeyPath = tuple  # tuple[str | int, ...]

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# Arrays and inline tables nested deeper than this are refused: no config needs it, and the parser
# would otherwise fail with a RecursionError somewhere past a few hundred levels.
MAX_NESTING = 32


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
    except RecursionError:
        data = None  # nesting beyond the parser's reach: the scanner below names the key
    scanner = _PositionScanner(text)
    lines = scanner.scan()
    if scanner.too_deep is not None:
        key_path, line = scanner.too_deep
        raise ConfigError([ConfigProblem(path, line, key_path, f"arrays or inline tables nested more than "
                                         f"{MAX_NESTING} levels deep; no config needs that many")])
    if data is None:
        raise ConfigError([ConfigProblem(path, None, "", "values nested too deeply to read")])
    return TomlDocument(data=data, path=path, lines=lines)


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
        self._depth = 0  # arrays and inline tables currently open
        self._value_key: tuple[KeyPath, int] = ((), 1)  # the key whose value is being read, its line
        self.too_deep: tuple[KeyPath, int] | None = None  # that key, once its value nests too deep

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
        if self._depth == 0:
            self._value_key = (path, line)
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

    def _open(self) -> None:
        """One more array or inline table open; stop the scan past MAX_NESTING."""
        self._depth += 1
        if self._depth > MAX_NESTING:
            self.too_deep = self._value_key
            raise _ScanError("nested too deep")

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        self._open()
        index = 0
        while True:
            self._skip_space(newlines=True)
            if self._peek() == "]":
                self.pos += 1
                self._depth -= 1
                return
            self.lines[path + (index,)] = self._line()
            self._value(path + (index,))
            index += 1
            self._skip_space(newlines=True)
            if self._peek() == ",":
                self.pos += 1

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        self._open()
        while True:
            self._skip_space(newlines=True)  # newlines: TOML 1.1 allows them, harmless otherwise
            if self._peek() == "}":
                self.pos += 1
                self._depth -= 1
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



# ---------------------------------------------------------------------------------------------------
# Checking: the typed getters every config file's schema is read through
# ---------------------------------------------------------------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a key absent from its table


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe_value(value: Any) -> str:
    """What a value is, for "got ..." in a message: 'an integer (7)', 'a table', 'nothing'."""
    if value is MISSING:
        return "nothing"
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             (list, "an array"), (dict, "a table"), (datetime, "a date-time"), (date, "a date"), (time, "a time")]
    kind = next((label for cls, label in kinds if isinstance(value, cls)), type(value).__name__)
    shown = repr(value) if not isinstance(value, (bool, dict)) else ""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} ({shown})" if shown else kind


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name a misspelt `name` most likely meant, or None: the one "did you mean" policy."""
    known = list(known)
    by_case = [k for k in known if k.lower() == name.lower()]
    close = by_case or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close and len(name) >= 3:  # short names miss the ratio: "rons" -> ron_adu, "offset" -> offset_margin_adu
        lowered = name.lower()
        sharing = [k for k in known if k.lower().startswith(lowered) or lowered.startswith(k.lower().split("_")[0])]
        close = difflib.get_close_matches(name, sharing, n=1, cutoff=0.0)
    return close[0] if close else None


def unknown_key_message(key: str, known: Iterable[str], what: str = "key", owner: str = "") -> str:
    """"unknown key 'x'; did you mean 'y'? (expected one of: ...)": the list only when it is short."""
    known = tuple(known)
    message = f"unknown {what} {key!r}" + (f" of {owner}" if owner else "")
    close = closest_name(key, known)
    if close:
        message += f"; did you mean {close!r}?"
    if len(known) <= 12:
        message += f" (expected one of: {', '.join(known)})"
    return message


def _written_at(doc: TomlDocument, key_path: tuple) -> tuple[int, int | None]:
    """(how many leading parts of `key_path` the document wrote, the line of the deepest one)."""
    parts = tuple(key_path)
    while parts:
        line = doc.lines.get(parts)
        if line is not None:
            return len(parts), line
        parts = parts[:-1]
    return 0, None


class TomlChecker:
    """Reads a config's values through typed getters, collecting every problem to report at once.

    A getter returns the value (or a default / None when it is wrong or absent) and records what
    is wrong with its key path; `raise_if_any` then raises one ConfigError listing them all in
    file order. `overlay`: a second document laid over `doc` (e.g. monitor.toml's [limits] over
    hk_limits.toml); a problem is located in whichever of the two wrote the key.
    """

    overlay: TomlDocument | None = None

    def __init__(self, doc: TomlDocument | None, origin: str | Path = "<string>", base_dir: Path | None = None,
                 overlay: TomlDocument | None = None):
        self.doc = doc
        self.origin = doc.path if doc is not None else origin
        # relative paths in a file are the file's folder's
        self.base_dir = base_dir or (Path(os.path.abspath(doc.path)).parent if doc is not None else Path.cwd())
        self.overlay = overlay
        self.problems: list[ConfigProblem] = []

    # -- reporting ------------------------------------------------------------------------------
    def problem(self, key_path: tuple, message: str) -> None:
        origin: str | Path = self.origin
        depth, line = _written_at(self.doc, key_path) if self.doc is not None else (0, None)
        if self.overlay is not None:
            overlay_depth, overlay_line = _written_at(self.overlay, key_path)
            if overlay_depth and overlay_depth >= depth:
                origin, line = self.overlay.path, overlay_line
        self.problems.append(ConfigProblem(origin, line, format_key_path(key_path), message))

    def line(self, key_path: tuple) -> int | None:
        return self.doc.line_of(key_path) if self.doc is not None else None

    def wrong_type(self, key_path: tuple, value: Any, expected: str) -> None:
        self.problem(key_path, f"expected {expected}; got {describe_value(value)}")

    def unknown_keys(self, table: dict, key_path: tuple, known: Iterable[str], what: str = "key",
                     owner: str = "") -> None:
        known = tuple(known)
        for key in table:
            if key not in known:
                self.problem(key_path + (key,), unknown_key_message(key, known, what, owner))

    def sorted_problems(self) -> list[ConfigProblem]:
        # file order reads best; problems without a line (no file) keep their walk order at the end
        return sorted(self.problems, key=lambda p: (p.line is None, p.line or 0))

    def raise_if_any(self, error: Callable[[list[ConfigProblem]], Exception] = ConfigError) -> None:
        if self.problems:
            raise error(self.sorted_problems())

    # -- getters ----------------------------------------------------------------------------------
    def table(self, value: Any, key_path: tuple, known: Iterable[str] | None = None, example: str = "") -> dict:
        """`value` as a table ({} if absent or of the wrong type), reporting keys outside `known`."""
        if value is MISSING:
            return {}
        if not isinstance(value, dict):
            self.wrong_type(key_path, value, f"a table, e.g. {example or '[' + format_key_path(key_path) + ']'}")
            return {}
        if known is not None:
            self.unknown_keys(value, key_path, known)
        return value

    def required(self, table: dict, key_path: tuple, key: str, example: str = "") -> Any:
        """table[key], or MISSING after reporting it missing."""
        if key not in table:
            where = f"in [{format_key_path(key_path)}]" if key_path else "at the top of the file"
            self.problem(key_path + (key,), f"missing required key {key!r} {where}" + (f"; e.g. {example}" if example
                                                                                       else ""))
            return MISSING
        return table[key]

    def _get(self, table: dict, key_path: tuple, key: str, required: bool, example: str) -> Any:
        return self.required(table, key_path, key, example) if required else table.get(key, MISSING)

    def string(self, table: dict, key_path: tuple, key: str, *, required: bool = False, example: str = "",
               empty: bool = False) -> str | None:
        """A string, stripped; None if absent or wrong. `empty`: "" is a value, not a mistake."""
        value = self._get(table, key_path, key, required, example)
        if value is MISSING:
            return None
        if not isinstance(value, str) or not (empty or value.strip()):
            kind = "a string" if empty else "a non-empty string"
            self.wrong_type(key_path + (key,), value, f"{kind}, e.g. {example}" if example else kind)
            return None
        return value.strip()

    def number(self, table: dict, key_path: tuple, key: str, default: Any = None, *, required: bool = False,
               integer: bool = False, minimum: float | None = None, maximum: float | None = None,
               strict: bool = False, example: str = "", expected: str = "") -> Any:
        """A number (int or float; `integer`: a whole one) within the bounds, else `default`.

        `strict`: the minimum itself is excluded. `expected` replaces the generated description."""
        value = self._get(table, key_path, key, required, example)
        if value is MISSING:
            return default
        if not self.number_ok(value, integer=integer, minimum=minimum, maximum=maximum, strict=strict):
            self.wrong_type(key_path + (key,), value, expected or _number_expected(integer, minimum, maximum, strict,
                                                                                  example))
            return default
        return value

    def integer(self, table: dict, key_path: tuple, key: str, default: Any = None, **bounds: Any) -> Any:
        return self.number(table, key_path, key, default, integer=True, **bounds)

    @staticmethod
    def number_ok(value: Any, *, integer: bool = False, minimum: float | None = None,
                  maximum: float | None = None, strict: bool = False) -> bool:
        if not (is_int(value) if integer else is_number(value)):
            return False
        if minimum is not None and (value < minimum or (strict and value == minimum)):
            return False
        return maximum is None or value <= maximum

    def boolean(self, table: dict, key_path: tuple, key: str, default: Any = None, *, example: str = "") -> Any:
        value = table.get(key, MISSING)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.wrong_type(key_path + (key,), value, f"true or false, e.g. {example}" if example else "true or false")
            return default
        return value

    def choice(self, table: dict, key_path: tuple, key: str, choices: Iterable[Any], default: Any = None, *,
               required: bool = False, hint: str = "", example: str = "") -> Any:
        """One of `choices`, else `default`; `hint` follows the list of choices in the message."""
        choices = tuple(choices)
        value = self._get(table, key_path, key, required, example)
        if value is MISSING:
            return default
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            got = repr(value) if isinstance(value, str) else describe_value(value)
            self.problem(key_path + (key,), f"expected one of {', '.join(repr(c) for c in choices)}"
                                            f"{' ' + hint if hint else ''}; got {got}")
            return default
        return value

    def range(self, value: Any, key_path: tuple, *, expected: str, integer: bool = False,
              minimum: float | None = None, label: str = "range", ends: tuple[str, str] = ("low", "high")) -> tuple | None:
        """A two-number array [low, high] with low <= high, or None after reporting it."""
        if not (isinstance(value, list) and len(value) == 2
                and all(self.number_ok(v, integer=integer, minimum=minimum) for v in value)):
            self.wrong_type(key_path, value, expected)
            return None
        low, high = value
        if low > high:
            self.problem(key_path, f"{label} reversed ({low} > {high}); expected [{ends[0]}, {ends[1]}] "
                                   f"with {ends[0]} <= {ends[1]}")
            return None
        return (low, high) if integer else (float(low), float(high))

    def strings(self, table: dict, key_path: tuple, key: str, *, expected: str, required: bool = False,
                valid: Callable[[str], bool] = bool) -> list[str] | None:
        """A non-empty array of strings (a single string is taken as one), each passing `valid`."""
        value = self._get(table, key_path, key, required, "")
        if value is MISSING:
            return None if required else []
        items = [value] if isinstance(value, str) else value
        if not (isinstance(items, list) and items and all(isinstance(i, str) and valid(i) for i in items)):
            self.wrong_type(key_path + (key,), value, expected)
            return None
        return list(items)

    def path(self, table: dict, key_path: tuple, key: str, *, base: Path | None = None, required: bool = False,
             example: str = "") -> Path | None:
        """An absolute path; a relative one is taken from `base` (default: the file's folder), ~ expanded."""
        text = self.string(table, key_path, key, required=required, example=example)
        if text is None:
            return None
        path = Path(os.path.expanduser(text))
        # abspath, not resolve: keep the user's symlinks (results is often a link to a data disk)
        return Path(os.path.abspath(path if path.is_absolute() else (base or self.base_dir) / path))


def _number_expected(integer: bool, minimum: float | None, maximum: float | None, strict: bool, example: str) -> str:
    text = "a whole number" if integer else "a number"
    if minimum is not None and maximum is not None:
        text += f" between {minimum:g} and {maximum:g}"
    elif minimum is not None:
        text += f" > {minimum:g}" if strict else f" >= {minimum:g}"
    elif maximum is not None:
        text += f" <= {maximum:g}"
    return f"{text}, e.g. {example}" if example else text
