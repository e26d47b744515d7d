"""Lines of ELVIS's text tables (EXP_LOG, HK): LF or CRLF, tab-separated, written while we read.

A last line without its terminator is one still being written: readers hold it back unless told
the file is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TextLine:
    number: int  # 1-based line number in the file
    text: str  # without its line terminator
    end: int  # byte offset just past its terminator, relative to the chunk it came from

    @property
    def is_blank(self) -> bool:
        # A line of nothing but tabs/spaces carries no data.
        return not self.text.strip()


def split_lines(data: bytes, first_number: int = 1) -> tuple[list[TextLine], bytes]:
    """Terminated lines of `data` (LF or CRLF) and the unterminated tail (b"" if none)."""
    lines: list[TextLine] = []
    start, number = 0, first_number
    while True:
        stop = data.find(b"\n", start)
        if stop < 0:
            return lines, data[start:]
        raw = data[start:stop]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        lines.append(TextLine(number, decode_text(raw), stop + 1))
        start, number = stop + 1, number + 1


def decode_text(raw: bytes) -> str:
    # The lab PCs run Windows: anything that is not UTF-8 is taken as Latin-1, never an error.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_fields(text: str, expected: int) -> list[str] | None:
    """Stripped tab-separated fields, trailing empty extras dropped; None if the count is wrong."""
    fields = [f.strip() for f in text.split("\t")]
    while len(fields) > expected and fields[-1] == "":
        fields.pop()
    return fields if len(fields) == expected else None


def read_lines(path: Path, complete: bool) -> tuple[list[TextLine], str | None]:
    """A file's lines and its unterminated last line (None if there is none, or if `complete`:
    then that line is returned among the others)."""
    lines, tail = split_lines(path.read_bytes())
    if not tail:
        return lines, None
    last = TextLine(lines[-1].number + 1 if lines else 1, decode_text(tail.rstrip(b"\r")), 0)
    if complete:
        return [*lines, last], None
    return lines, last.text
