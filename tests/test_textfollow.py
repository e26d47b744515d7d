"""The one follower of growing text files (engine/formats/textfollow.py) that the EXP_LOG and HK
readers and the app's log tail share: new lines only, a partial last line held back, a truncated
or replaced file started over, a closed file's last line kept, bounded reads by byte offset."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.formats.textfollow import TextFollower, read_text_lines


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def texts(lines) -> list[tuple[int, str]]:
    return [(line.number, line.text) for line in lines]


def test_a_partial_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "growing.txt"
    follower = TextFollower(path)
    assert follower.read() == []  # not there yet

    append(path, b"first\r\nsecond\nthi")
    assert texts(follower.read()) == [(1, "first"), (2, "second")]
    assert follower.pending == "thi" and follower.offset == len(b"first\r\nsecond\n")
    assert follower.read() == []  # still being written: not handed out, not lost

    append(path, b"rd\n")
    lines = follower.read()
    assert texts(lines) == [(3, "third")]
    assert (lines[0].start, lines[0].end) == (14, 20)  # byte offsets in the file
    assert follower.pending is None and follower.read() == []


def test_only_appended_bytes_are_read(tmp_path):
    path = tmp_path / "growing.txt"
    path.write_bytes(b"aaaa\nbbbb\n")
    follower = TextFollower(path)
    assert len(follower.read()) == 2
    with open(path, "r+b") as handle:  # the lines already read change in place (same size, same file)
        handle.write(b"XXXX")
    append(path, b"cccc\n")
    assert texts(follower.read()) == [(3, "cccc")]  # read from the byte offset: no re-read


def test_a_read_is_bounded(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"".join(b"line %02d\n" % i for i in range(10)))  # 8 bytes a line
    follower = TextFollower(path, max_bytes=20)
    first = follower.read_chunk()
    assert texts(first.lines()) == [(1, "line 00"), (2, "line 01")] and not first.at_end
    numbers = [line.number for line in first.lines()]
    for _ in range(10):
        chunk = follower.read_chunk()
        assert len(chunk.data) <= 20
        numbers += [line.number for line in chunk.lines()]
        if chunk.at_end:
            break
    assert numbers == list(range(1, 11))


def test_a_line_longer_than_a_read_is_cut_and_the_count_stays_right(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" + b"x" * 50 + b"\nafter\n")
    follower = TextFollower(path, max_bytes=16)
    lines = follower.read_all(final=False)
    assert texts(lines) == [(1, "short"), (2, "x" * 16), (3, "after")]


def test_a_truncated_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"one\ntwo\nthree\n")
    follower = TextFollower(path)
    assert len(follower.read()) == 3
    path.write_bytes(b"new\n")  # same file, shorter: truncated and rewritten
    assert follower.replaced()
    chunk = follower.read_chunk()
    assert chunk.restarted and texts(chunk.lines()) == [(1, "new")]
    assert not follower.read_chunk().restarted  # said once


def test_a_replaced_file_is_read_again_even_when_longer(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"one\ntwo\n")
    follower = TextFollower(path)
    assert len(follower.read()) == 2
    other = tmp_path / "other.txt"
    other.write_bytes(b"alpha\nbeta\ngamma\ndelta\n")  # longer: only its inode tells
    os.replace(other, path)
    chunk = follower.read_chunk()
    assert chunk.restarted
    assert texts(chunk.lines()) == [(1, "alpha"), (2, "beta"), (3, "gamma"), (4, "delta")]


def test_a_final_file_keeps_its_last_line_without_newline(tmp_path):
    path = tmp_path / "closed.txt"
    path.write_bytes(b"header\r\nlast row\r")
    assert texts(TextFollower(path).read()) == [(1, "header")]  # may still be written
    lines = TextFollower(path).read(final=True)  # the caller knows it is closed
    assert texts(lines) == [(1, "header"), (2, "last row")]
    assert lines[-1].end == path.stat().st_size
    assert read_text_lines(path, final=False) == (lines[:1], "last row")


def test_utf8_with_replacement_and_no_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfObsID\tCCD\n25\xb0C\n")
    lines = TextFollower(path).read()
    assert texts(lines) == [(1, "ObsID\tCCD"), (2, "25\ufffdC")]  # never an error


def test_resumes_from_a_saved_state_and_notices_another_file(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"one\ntwo\n")
    follower = TextFollower(path)
    follower.read()
    state = json.loads(json.dumps(follower.state()))

    append(path, b"three\n")
    resumed = TextFollower.from_state(path, state)
    assert texts(resumed.read()) == [(3, "three")]

    other = tmp_path / "other.txt"
    other.write_bytes(b"a fresh file, longer than the first one\n")
    os.replace(other, path)
    assert TextFollower.from_state(path, state).read_chunk().restarted
