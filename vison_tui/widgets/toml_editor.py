"""A TextArea for campaign TOML: syntax colours, and a marker in the gutter on lines with problems.

Textual highlights TOML through tree-sitter (`pip install "textual[syntax]"`); without it a small
line-based highlighter gives the same colours, so the editor looks the same either way.
"""

from __future__ import annotations

import re

from rich.segment import Segment
from rich.style import Style
from textual._tree_sitter import TREE_SITTER, get_language
from textual.strip import Strip
from textual.widgets import TextArea

PROBLEM_MARK = "✗"


def tree_sitter_toml() -> bool:
    """Whether Textual can highlight TOML itself."""
    try:
        return bool(TREE_SITTER and get_language("toml") is not None)
    except Exception:  # a broken grammar install must not stop the editor
        return False


# -- the fallback highlighter: (pattern, highlight name), tried left to right on each line ----------
_HEADER_RE = re.compile(r"^\s*\[\[?[^\]#]*\]\]?")
_KEY_RE = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")
_INLINE_KEY_RE = re.compile(r"[{,]\s*([A-Za-z0-9_-]+)\s*=")
_TOKENS = (
    (re.compile(r"#.*$"), "comment"),
    (re.compile(r'"""|\'\'\''), "string"),  # opens or closes a multi-line string
    (re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\''), "string"),
    (re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?"), "toml.datetime"),
    (re.compile(r"\b(?:true|false)\b"), "boolean"),
    (re.compile(r"[+-]?(?:0x[0-9A-Fa-f_]+|\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?|inf|nan)\b"), "number"),
)


def highlight_toml_lines(lines: list[str]) -> dict[int, list[tuple[int, int | None, str]]]:
    """Highlights per line as TextArea keeps them: (start byte, end byte or None, name)."""
    highlights: dict[int, list[tuple[int, int | None, str]]] = {}
    in_multiline: str | None = None  # the quotes of an open multi-line string
    for index, line in enumerate(lines):
        spans: list[tuple[int, int, str]] = []
        position = 0
        if in_multiline:
            end = line.find(in_multiline)
            if end < 0:
                highlights[index] = [(0, None, "string")]
                continue
            spans.append((0, end + 3, "string"))
            position, in_multiline = end + 3, None
        else:
            header = _HEADER_RE.match(line)
            key = _KEY_RE.match(line)
            if header:
                spans.append((header.start(), header.end(), "heading"))
                position = header.end()
            elif key:
                spans.append((key.start(1), key.end(1), "toml.type"))
                position = key.end()
        for match in _INLINE_KEY_RE.finditer(line, position):
            spans.append((match.start(1), match.end(1), "toml.type"))
        while position < len(line):
            found = None
            for pattern, name in _TOKENS:
                match = pattern.search(line, position)
                if match and (found is None or match.start() < found[0].start()):
                    found = (match, name)
            if found is None:
                break
            match, name = found
            if match.group() in ('"""', "'''"):
                close = line.find(match.group(), match.end())
                if close < 0:
                    in_multiline = match.group()
                    spans.append((match.start(), len(line), "string"))
                    break
                spans.append((match.start(), close + 3, "string"))
                position = close + 3
                continue
            spans.append((match.start(), match.end(), name))
            position = max(match.end(), position + 1)
        if spans:
            highlights[index] = [(_byte(line, start), _byte(line, end), name) for start, end, name in spans]
    return highlights


def _byte(line: str, column: int) -> int:
    return len(line[:column].encode("utf-8"))


class TomlEditor(TextArea):
    """The campaign editor. `set_problem_lines` marks lines (1-based) in the gutter."""

    COMPONENT_CLASSES = TextArea.COMPONENT_CLASSES | {"toml-editor--problem"}
    DEFAULT_CSS = """
    TomlEditor > .toml-editor--problem {
        color: $error;
        text-style: bold;
    }
    """

    def __init__(self, text: str = "", **kwargs) -> None:
        self.uses_tree_sitter = tree_sitter_toml()
        super().__init__(text, language="toml" if self.uses_tree_sitter else None, show_line_numbers=True,
                         soft_wrap=True, **kwargs)
        self._problem_lines: frozenset[int] = frozenset()

    # -- problems in the gutter -----------------------------------------------------------------
    def set_problem_lines(self, lines: set[int]) -> None:
        lines = frozenset(lines)
        if lines != self._problem_lines:
            self._problem_lines = lines
            self.refresh()

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if not self._problem_lines or not self.show_line_numbers:
            return strip
        offset_y = y + self.scroll_offset.y
        if offset_y >= self.wrapped_document.height:
            return strip
        line_index, _ = self.wrapped_document.offset_to_location((0, offset_y))
        if line_index + 1 not in self._problem_lines:
            return strip
        width = self.gutter_width
        gutter, text = strip.crop(0, width), strip.crop(width)
        number = gutter.text[: width - 2]
        if not number.strip():
            return strip  # a continuation of a wrapped line
        base = next((segment.style for segment in gutter if segment.style), None) or Style()
        mark = base + self.get_component_rich_style("toml-editor--problem", partial=True)
        marked = Strip([Segment(number, mark), Segment(PROBLEM_MARK + " ", mark)], width)
        return Strip.join([marked, text])

    # -- highlighting without tree-sitter -------------------------------------------------------
    def _build_highlight_map(self) -> None:
        # TextArea calls this after each edit; with tree-sitter it queries the syntax tree.
        if self.uses_tree_sitter:
            super()._build_highlight_map()
            return
        # private TextArea state (Textual 8): if a later Textual renames it, show plain text
        try:
            self._line_cache.clear()
            self._highlights.clear()
            self._highlights.update(highlight_toml_lines(self.document.lines))
        except AttributeError:
            pass
