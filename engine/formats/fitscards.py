"""FITS header cards written without astropy, for the processes that write a product's plane but
have no other use for astropy (0.3 s to import in each): the fixed format of the FITS standard
(section 4), value cards of a boolean, an integer, a float or a short string, and commentary
cards. Values are formatted as astropy formats them, so a header reads back the same through
either; what this cannot write (a string needing CONTINUE cards, a non-finite float) raises
ValueError, and the caller leaves the header to astropy."""

from __future__ import annotations

import math
from typing import Any, Iterable

CARD = 80
BLOCK = 2880
VALUE_WIDTH = 20  # a fixed-format value fills columns 11-30
COMMENTARY_WIDTH = 72


def format_float(value: float) -> str:
    """A float as a FITS value: Python's shortest repr, E for the exponent (two digits at least),
    '.0' on a whole number; at most 20 characters (the significand shortened)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be a FITS value")
    text = str(value).upper()
    if "E" in text:
        significand, exponent = text.split("E")
        sign = exponent[0] if exponent[0] in "+-" else ""
        text = f"{significand}E{sign}{int(exponent.lstrip('+-')):02d}"
        if len(text) > VALUE_WIDTH:
            at = text.index("E")
            text = text[:VALUE_WIDTH - (len(text) - at)] + text[at:]
    elif "." not in text:
        text += ".0"
    return text[:VALUE_WIDTH]


def format_value(value: Any) -> str:
    """The value field of a card (columns 11 on), as astropy writes it."""
    if not isinstance(value, (bool, int, float, str)) and hasattr(value, "item"):  # a numpy scalar
        if isinstance(value.item(), float):
            return f"{format_float(value):>{VALUE_WIDTH}}"  # its own precision's repr: a float32's 0.07 stays 0.07
        value = value.item()
    if isinstance(value, bool):
        return f"{'T' if value else 'F':>{VALUE_WIDTH}}"
    if isinstance(value, int):
        return f"{value:>{VALUE_WIDTH}}"
    if isinstance(value, float):
        return f"{format_float(value):>{VALUE_WIDTH}}"
    if isinstance(value, str):
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"{value!r}: a FITS string holds printable ASCII only")
        if not value:
            return "''"  # astropy writes an empty string unpadded
        quoted = "'" + f"{value.replace(chr(39), chr(39) * 2):<8}" + "'"
        if len(quoted) > CARD - 10:
            raise ValueError(f"{value!r}: too long for one card (a CONTINUE card is astropy's)")
        return f"{quoted:<{VALUE_WIDTH}}"
    raise ValueError(f"{value!r}: not a FITS value (bool, int, float or str)")


def value_card(keyword: str, value: Any, comment: str = "") -> str:
    """One 80-character card: KEYWORD = value / comment (the comment cut to fit)."""
    if not (keyword.isascii() and len(keyword) <= 8 and keyword == keyword.upper().strip()
            and all(c.isalnum() or c in "-_" for c in keyword)):
        raise ValueError(f"{keyword!r}: not a standard FITS keyword")
    card = f"{keyword:<8}= {format_value(value)}"
    if comment:
        if not comment.isascii() or not comment.isprintable():
            raise ValueError(f"{comment!r}: a FITS comment holds printable ASCII only")
        card += f" / {comment}"
    return f"{card[:CARD]:<{CARD}}"


def commentary_cards(keyword: str, text: str) -> list[str]:
    """COMMENT (or HISTORY) cards holding `text`, 72 characters a card (as astropy cuts it)."""
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"{text!r}: a FITS comment holds printable ASCII only")
    return [f"{keyword:<8}{text[i:i + COMMENTARY_WIDTH]:<{COMMENTARY_WIDTH}}"
            for i in range(0, max(len(text), 1), COMMENTARY_WIDTH)]


def header_bytes(cards: Iterable[str]) -> bytes:
    """The cards, END and blanks to a whole number of 2880-byte blocks."""
    text = "".join(cards) + f"{'END':<{CARD}}"
    return text.ljust(-(-len(text) // BLOCK) * BLOCK).encode("ascii")
