"""Lines of ELVIS's text tables (EXP_LOG, HK): LF or CRLF, tab-separated, written while we read.

A last line without its terminator is one still being written: readers hold it back unless told
the file is complete (see textfollow.py, which reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOM = b"\xef\xbb\xbf"  # Windows editors start a UTF-8 file with it; it is no part of the first name


@dataclass(frozen=True)
class TextLine:
    number: int  # 1-based line number in the file
    text: str  # without its line terminator
    start: int  # byte offset of its first byte in the file
    end: int  # byte offset just past its terminator (or its last byte, for a final unterminated line)

    @property
    def is_blank(self) -> bool:
        # A line of nothing but tabs/spaces carries no data.
        return not self.text.strip()


def split_lines(data: bytes, first_number: int = 1, start: int = 0) -> tuple[list[TextLine], bytes]:
    """Terminated lines of `data` (LF or CRLF), which starts at byte `start` of its file, and the
    unterminated tail (b"" if none)."""
    lines: list[TextLine] = []
    begin, number = 0, first_number
    while True:
        stop = data.find(b"\n", begin)
        if stop < 0:
            return lines, data[begin:]
        lines.append(TextLine(number, decode_text(data[begin:stop]), start + begin, start + stop + 1))
        begin, number = stop + 1, number + 1


def decode_text(raw: bytes) -> str:
    """A line's text without its CR: UTF-8, undecodable bytes as U+FFFD (never an error)."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted for a message: non-printable characters escaped (a binary file must not
    reach the console raw), cut after `limit` characters."""
    cut = len(text) > limit
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                      for c in text[:limit])
    return f"'{escaped}'" + ("..." if cut else "")


def is_binary(text: str) -> bool:
    """Control characters other than tab (NUL...): not a line of a text table. Undecodable bytes
    alone are not enough: a Windows PC may write a Latin-1 degree sign in a text file."""
    return _CONTROL.search(text) is not None


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # one C scan per line: HK files hold thousands


def split_fields(text: str, expected: int) -> list[str] | None:
    """Stripped tab-separated fields, trailing empty extras dropped; None if the count is wrong."""
    fields = [f.strip() for f in text.split("\t")]
    while len(fields) > expected and fields[-1] == "":
        fields.pop()
    return fields if len(fields) == expected else None
