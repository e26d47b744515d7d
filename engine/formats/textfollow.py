"""Following a text file that grows while we read it: ELVIS's EXP_LOG and HK files, the pipeline's log.

Each read takes only the bytes appended since the last one (by byte offset, at most `max_bytes`
at a time) and hands back whole lines. A last line without its newline is one still being
written and waits for it, unless the caller says the file is final (closed: aim mode, a settled
HK file). A file that shrinks or is replaced (another inode) is started over from its first byte,
and the read says so. A line longer than `max_bytes` is handed back cut, its rest skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .textlines import BOM, TextLine, decode_text, split_lines

READ_BYTES = 4 << 20  # per read: a day's EXP_LOG is about 1.5 MB, an HK file 50 kB


@dataclass(frozen=True)
class TextChunk:
    """Whole lines read in one go."""

    start: int  # byte offset of `data` in the file
    data: bytes  # whole lines; the last one unterminated only if the read was final or it was cut
    first_line: int  # number of its first line
    restarted: bool  # the file was truncated or replaced: what was read before no longer holds
    at_end: bool  # read up to the end of the file (a held-back last line waits there)

    def lines(self) -> list[TextLine]:
        data, start = self.data, self.start
        if start == 0 and data.startswith(BOM):
            data, start = data[len(BOM):], len(BOM)
        lines, tail = split_lines(data, self.first_line, start)
        if tail:
            number = lines[-1].number + 1 if lines else self.first_line
            lines.append(TextLine(number, decode_text(tail), start + len(data) - len(tail), start + len(data)))
        return lines


class TextFollower:
    """Reads one growing text file from where it stopped last time.

    `offset` is just past the last line handed back, `line` that line's number. `pending` is the
    unterminated last line held back by the last read (None if there is none).
    """

    def __init__(self, path: str | os.PathLike[str], *, offset: int = 0, line: int = 0,
                 identity: tuple[int, int] | None = None, max_bytes: int = READ_BYTES):
        self.path = Path(path)
        self.offset = offset
        self.line = line
        self.identity = identity  # (device, inode) of the file read; None until the first read
        self.max_bytes = max_bytes
        self.pending: str | None = None
        self._in_cut_line = False  # the rest of a line longer than max_bytes is being skipped

    def replaced(self) -> bool:
        """The file at `path` is not the one read so far (another inode) or is shorter."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return False
        return self._changed(info)

    def _changed(self, info: os.stat_result) -> bool:
        known = self.identity is not None and self.identity != (info.st_dev, info.st_ino)
        return known or info.st_size < self.offset

    def restart(self, offset: int = 0) -> None:
        """Read again from byte `offset` (a line start) of whatever file is at `path` now; line
        numbers count from there."""
        self.offset, self.line, self.identity = offset, 0, None
        self.pending, self._in_cut_line = None, False

    def unread(self, line: TextLine) -> None:
        """Give back `line` and every line after it: the next read starts with it."""
        self.offset, self.line = line.start, line.number - 1
        self.pending, self._in_cut_line = None, False

    def read(self, *, final: bool = False) -> list[TextLine]:
        """The lines appended since the last read (see read_chunk)."""
        return self.read_chunk(final=final).lines()

    def read_chunk(self, *, final: bool = False) -> TextChunk:
        """The whole lines appended since the last read, at most `max_bytes` of them. With
        `final`, an unterminated last line is handed back too: the file is closed."""
        restarted = False
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return TextChunk(self.offset, b"", self.line + 1, False, True)
        with handle:
            info = os.fstat(handle.fileno())
            if self._changed(info):
                self.restart()
                restarted = True
            self.identity = (info.st_dev, info.st_ino)
            handle.seek(self.offset)
            data = handle.read(self.max_bytes)
        start = self.offset
        if self._in_cut_line:
            newline = data.find(b"\n")
            skipped = len(data) if newline < 0 else newline + 1
            self._in_cut_line = newline < 0
            data, start = data[skipped:], start + skipped
            self.offset = start
        at_end = start + len(data) >= info.st_size
        whole = data[:data.rfind(b"\n") + 1]
        tail = data[len(whole):]
        self.pending = None
        if tail and at_end and final:
            whole = data
        elif tail and at_end:
            self.pending = decode_text(tail)
        elif tail and not whole:  # a line longer than a read: hand it back cut, skip the rest
            whole, self._in_cut_line = data, True
        lines = whole.count(b"\n") + (0 if whole.endswith(b"\n") or not whole else 1)
        chunk = TextChunk(start, whole, self.line + 1, restarted, at_end)
        self.offset, self.line = start + len(whole), self.line + lines
        return chunk

    def read_all(self, *, final: bool) -> list[TextLine]:
        """Every line from here to the end of the file, read in bounded pieces."""
        lines: list[TextLine] = []
        while True:
            before = self.offset
            chunk = self.read_chunk(final=final)
            lines += chunk.lines()
            if chunk.at_end or self.offset == before:
                return lines

    def state(self) -> dict[str, Any]:
        """Where to resume (JSON-able)."""
        return {"offset": self.offset, "line": self.line,
                "identity": list(self.identity) if self.identity else None}

    @classmethod
    def from_state(cls, path: str | os.PathLike[str], state: Mapping[str, Any]) -> TextFollower:
        identity = state.get("identity")
        return cls(path, offset=int(state.get("offset", 0)), line=int(state.get("line", 0)),
                   identity=(int(identity[0]), int(identity[1])) if identity else None)


def read_text_lines(path: str | os.PathLike[str], *, final: bool) -> tuple[list[TextLine], str | None]:
    """A whole file's lines and its held-back unterminated last line (None if there is none, or
    if `final`: then it is among the lines)."""
    follower = TextFollower(path)
    lines = follower.read_all(final=final)
    return lines, follower.pending


class TableFollower:
    """What the EXP_LOG and HK followers share: the file followed and where they are in it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._text = TextFollower(self.path)

    @property
    def offset(self) -> int:
        """Bytes of the file used: just past the last whole line read."""
        return self._text.offset

    @property
    def line(self) -> int:
        """Number of the last line read."""
        return self._text.line

    def _resume(self, state: Mapping[str, Any]) -> None:
        self._text = TextFollower.from_state(self.path, state)
