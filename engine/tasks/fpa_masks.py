"""One FPA mask from several runs' masks: the bitwise or of their DEFECTS bits, in the LE1 layout.

Each `fpa run` that makes products writes its own `products/EUC_MASK_FPA.fits` (fpa_products.py):
BIAS01/02 and DARK01 the hot pixels (bit 1), FLAT01 the flat defects (2 dead, 4 low response,
8 high response, 16 bad column), all with the cosmetics DEFECTS bits (cosmetics.py) in uint8
extensions `j-i.Q` in LE1 order and orientation. Since the bits are shared, merging is a per-pixel
bitwise or, as the block COSMETICS00 merges its dark and flat defects into one DEFECTS map.

`merge_fpa_masks(sources, out)` checks every source before writing anything: an FPA mask (PRODUCT
MASK, LAYOUT LE1) of 145 HDUs with the 144 quadrant extensions named and ordered as the layout of
its design, the same design, geometry and extension shapes as the first source, uint8, its bits
declared (BITn cards) and the same names as the other sources give them. It then reads one
quadrant of every source at a time (a compressed section: memory is one quadrant a source), ors
them, and writes the result as the run's masks are written (fpa_products.write_mask_plane per
quadrant, fpa_products.write_product: a temporary name, then renamed, so `out` is whole or absent).

The merged file: primary header with the layout cards of the sources, TEST (the sources' tests
joined by '+'), the union of their OBSIDs, the bit definitions and limits cards of the sources,
and per source n (at most MAX_SOURCES): TESTn, SESSNn, RUNIDn, OBSIDSn, PRODn (the source's METHOD) and FILEn (its
path), also as HISTORY lines; totals per bit. Each extension: the place cards, the bit cards,
pixels per bit (NHOT, NDEAD, NLOW, NHIGH, NBADCPX; NBADCOL columns, as the flat mask counts them)
and NMASKED (pixels with any bit).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..formats.fpa import DESIGNS, fpa_layout
from .cosmetics import BAD_COLUMN, DEAD, HIGH, HOT, LOW
from .dataset import obsid_ranges
from .fpa_products import MASK_PRODUCT, place_cards, write_mask_plane, write_product

if TYPE_CHECKING:  # astropy takes 0.3 s to import: loaded where a FITS file is read or written
    from astropy.io import fits

MASK_FILE = MASK_PRODUCT.file
# DEFECTS bit -> the extension card counting its pixels (the run's masks' names: NHOT, NDEAD...)
COUNT_CARDS = {HOT: "NHOT", DEAD: "NDEAD", LOW: "NLOW", HIGH: "NHIGH", BAD_COLUMN: "NBADCPX"}
BIT_VALUES = {f"BIT{k}": 1 << k for k in range(8)}  # the mask's BITn card defines DEFECTS bit 2**n
MAX_SOURCES = 99  # indexed cards stay 8 characters (OBSIDS99)
# the sources' primary cards that state how their defects were found (copied to the merge)
LIMIT_CARDS = ("HOTLIM", "HOTSIG", "DEADMAX", "FLATLOW", "FLATHIGH", "COLFRAC")


class MaskMergeError(ValueError):
    """A source that is missing, unreadable or not mergeable with the others (said in one line)."""


@dataclass(frozen=True)
class MaskSource:
    """One run's FPA mask, its headers checked."""

    path: Path
    primary: fits.Header
    extnames: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    bits: dict[str, str]  # BITn keyword -> defect name

    def card(self, keyword: str, default: str = "") -> str:
        return str(self.primary.get(keyword, default))


@dataclass
class MergedMask:
    """What the merge wrote: the file, its sources, pixels per bit (and any) per extension."""

    path: Path
    sources: list[MaskSource]
    counts: dict[str, dict[int, int]] = field(default_factory=dict)  # extname -> bit -> pixels; 0: any bit

    def total(self, bit: int) -> int:
        return sum(c[bit] for c in self.counts.values())


def find_mask(source: str | Path) -> Path:
    """The mask file of `source`: the file itself, or `products/EUC_MASK_FPA.fits` of a result
    folder of `fpa run` (<results>/<session>/<TEST>), or EUC_MASK_FPA.fits of its products folder."""
    path = Path(source)
    if path.is_dir():
        for candidate in (path / "products" / MASK_FILE, path / MASK_FILE):
            if candidate.is_file():
                return candidate
        raise MaskMergeError(f"no {MASK_FILE} in {path} (expected {path / 'products' / MASK_FILE}: a result "
                             "folder of vison-engine fpa run with its products, not --no-meta)")
    if not path.exists():
        raise MaskMergeError(f"no such file or folder: {path}")
    return path


def open_mask(path: Path) -> fits.HDUList:
    from astropy.io import fits

    try:
        return fits.open(path)
    except (OSError, ValueError, TypeError) as exc:
        raise MaskMergeError(f"cannot read {path} as FITS: {exc}") from None


def read_source(path: Path, hdus: fits.HDUList) -> MaskSource:
    """The headers of one FPA mask (open as `hdus`), checked against the LE1 layout of its design."""
    try:
        primary = hdus[0].header
        headers = [(hdu.name, hdu.header, hdu.shape) for hdu in hdus[1:]]
    except (OSError, ValueError, TypeError) as exc:
        raise MaskMergeError(f"cannot read {path} as FITS: {exc}") from None
    if primary.get("PRODUCT") != "MASK" or primary.get("LAYOUT") != "LE1":
        raise MaskMergeError(f"{path} is no FPA mask in the LE1 layout (PRODUCT {primary.get('PRODUCT')!r}, "
                             f"LAYOUT {primary.get('LAYOUT')!r}; expected MASK and LE1: an fpa run's {MASK_FILE})")
    design = primary.get("FPADESGN")
    if design not in DESIGNS:
        raise MaskMergeError(f"{path}: FPADESGN {design!r} is no FPA design (expected {', '.join(DESIGNS)})")
    layout = fpa_layout(design)
    if len(headers) != len(layout.quadrants):
        raise MaskMergeError(f"{path} has {len(headers) + 1} HDUs where an LE1 mask has {len(layout.quadrants) + 1} "
                             "(the primary and one extension per quadrant)")
    bits = {key: str(primary[key]) for key in BIT_VALUES if key in primary}
    declared = sum(BIT_VALUES[key] for key in bits)
    for place, (name, header, shape) in zip(layout.quadrants, headers):
        if name != place.extname:
            raise MaskMergeError(f"{path}: HDU {place.hdu} is {name or 'unnamed'} where the LE1 layout has "
                                 f"{place.extname}")
        if header.get("BITPIX") != 8 or len(shape) != 2:
            raise MaskMergeError(f"{path}: extension {name} is not a 2-d uint8 image (BITPIX {header.get('BITPIX')}, "
                                 f"shape {shape}): a mask's extensions hold uint8 DEFECTS bits")
    if not declared:
        raise MaskMergeError(f"{path} defines no DEFECTS bit (no BITn card in its primary header)")
    return MaskSource(path, primary, tuple(n for n, _, _ in headers), tuple(s for _, _, s in headers), bits)


def check_compatible(sources: Sequence[MaskSource]) -> None:
    """Every source has the first one's design, geometry and extension shapes, and names a bit as it does."""
    first = sources[0]
    names: dict[str, tuple[str, Path]] = {}
    for source in sources:
        for keyword in ("FPADESGN", "GEOMETRY"):
            if source.card(keyword) != first.card(keyword):
                raise MaskMergeError(f"{source.path}: {keyword} {source.card(keyword)!r} where {first.path} has "
                                     f"{first.card(keyword)!r}: masks of different layouts do not merge")
        for name, shape, reference in zip(source.extnames, source.shapes, first.shapes):
            if shape != reference:
                raise MaskMergeError(f"{source.path}: extension {name} is {shape[0]} x {shape[1]} (rows x columns) "
                                     f"where {first.path}'s is {reference[0]} x {reference[1]}")
        for keyword, name in source.bits.items():
            known, where = names.setdefault(keyword, (name, source.path))
            if known != name:
                raise MaskMergeError(f"{source.path}: {keyword} is {name!r} where {where} has {known!r}: "
                                     "the DEFECTS bits differ")


def merge_fpa_masks(sources: Sequence[str | Path], out: str | Path, *, force: bool = False) -> MergedMask:
    """Merge the FPA masks of `sources` (mask files or `fpa run` result folders) into `out`."""
    out = Path(out)
    if not sources:
        raise MaskMergeError("no mask to merge: give result folders of vison-engine fpa run or their "
                             f"{MASK_FILE}")
    if len(sources) > MAX_SOURCES:
        raise MaskMergeError(f"{len(sources)} masks: at most {MAX_SOURCES} merge at once (merge the merges)")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists: not overwritten without --force")
    paths = [find_mask(s) for s in sources]
    seen: dict[Path, str | Path] = {}
    for source, path in zip(sources, paths):
        if path.resolve() in seen:
            raise MaskMergeError(f"{path} given twice ({seen[path.resolve()]} and {source})")
        seen[path.resolve()] = source
    with ExitStack() as files:  # each source opened once: its headers checked, then its quadrants read
        opened = [files.enter_context(open_mask(p)) for p in paths]
        masks = [read_source(p, hdus) for p, hdus in zip(paths, opened)]
        check_compatible(masks)
        layout = fpa_layout(masks[0].card("FPADESGN"))
        bit_names = {keyword: name for m in masks for keyword, name in m.bits.items()}
        bit_cards = sorted(((k, n, BIT_VALUES[k]) for k, n in bit_names.items()), key=lambda c: c[2])
        merged = MergedMask(out, masks)
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(files.enter_context(tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.merge-")))
        planes = []
        for index, place in enumerate(layout.quadrants, start=1):
            bits = np.zeros(masks[0].shapes[index - 1], np.uint8)
            for mask, hdus in zip(masks, opened):
                np.bitwise_or(bits, _quadrant(hdus[index], mask, place.extname), out=bits)
            counts = quadrant_counts(bits, [v for _, _, v in bit_cards])
            merged.counts[place.extname] = counts
            cards = [*place_cards(place), *_count_cards(bits, counts, bit_cards)]
            planes.append(write_mask_plane(work / f"{place.extname}.fits", place.extname, bits, cards, bit_cards))
        header = merged_header(masks, bit_cards, merged)
        for hdus in opened:  # closed before the rename: `out` may be one of them (--force)
            hdus.close()
        write_product(out.parent, out.name, header, planes)
    return merged


def _quadrant(hdu, mask: MaskSource, extname: str) -> np.ndarray:
    """One source's quadrant (decompressed without being cached on the HDU), its bits checked."""
    try:
        values = np.asarray(hdu.section[...] if hasattr(hdu, "section") else hdu.data)
    except (OSError, ValueError) as exc:
        raise MaskMergeError(f"cannot read {mask.path} extension {extname}: {exc}") from None
    undeclared = int(np.bitwise_or.reduce(values, axis=None)) & ~sum(BIT_VALUES[k] for k in mask.bits)
    if undeclared:
        raise MaskMergeError(f"{mask.path}: extension {extname} holds DEFECTS bit {undeclared & -undeclared}, which "
                             "its primary header does not define (no BITn card)")
    return values.astype(np.uint8, copy=False)


def quadrant_counts(bits: np.ndarray, values: Sequence[int]) -> dict[int, int]:
    """Pixels carrying each DEFECTS bit of `values`, and (key 0) pixels carrying any bit."""
    counts = {value: int(np.count_nonzero(bits & value)) for value in values}
    counts[0] = int(np.count_nonzero(bits))
    return counts


def _count_cards(bits: np.ndarray, counts: dict[int, int], bit_cards: Sequence[tuple[str, str, int]]):
    cards = []
    for keyword, name, value in bit_cards:
        cards.append((COUNT_CARDS.get(value, f"N{keyword}"), counts[value], f"pixels with bit {value} ({name})"))
        if value == BAD_COLUMN:  # as the flat mask counts them
            cards.append(("NBADCOL", int(np.count_nonzero((bits & BAD_COLUMN).any(axis=0))), "bad columns"))
    cards.append(("NMASKED", counts[0], "pixels with any DEFECTS bit"))
    return cards


def _obsids(text: str) -> list[int]:
    """The OBSIDs of a source's OBSIDS card ("1000-1009,1020"; obsid_ranges' form)."""
    numbers: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            numbers.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            return []
    return numbers


def history_lines(primary: fits.Header) -> list[str]:
    """A merge's HISTORY as the lines it added (astropy cuts a line over several cards; each of
    the merge's lines starts with "source" or a "n>" mark)."""
    lines: list[str] = []
    for card in primary.get("HISTORY", []):
        text = str(card)
        if lines and not (text.startswith("source ") or text.partition(">")[0].isdigit()):
            lines[-1] += text
        else:
            lines.append(text)
    return lines


def _string_card(value: str, comment: str) -> tuple[str, str]:
    """A string card whose comment would not fit beside its value keeps none (astropy would cut it
    with a warning; a long value is continued over CONTINUE cards). The primary's COMMENT says what
    the indexed cards are."""
    return value, comment if len(value) + len(comment) <= 60 else ""


def merged_header(masks: Sequence[MaskSource], bit_cards: Sequence[tuple[str, str, int]],
                  merged: MergedMask) -> fits.Header:
    """The merge's primary header: the layout, the sources (indexed cards and HISTORY), bits and totals."""
    from astropy.io import fits

    first = masks[0]
    header = fits.Header()
    header["ORIGIN"] = ("vison", "CCD273 ground-calibration pipeline")
    header["VISON"] = (__version__, "vison version")
    header["PRODUCT"] = ("MASK", "kind of calibration product")
    header["DATE"] = (datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "UTC creation time")
    header["TEST"] = _string_card("+".join(dict.fromkeys(m.card("TEST", "?") for m in masks)),
                                  "tests of the masks merged")
    header["BLOCK"] = ("FPA", "the whole focal plane")
    for keyword in ("FPADESGN", "LAYOUT", "GEOMETRY"):
        header[keyword] = (first.card(keyword), first.primary.comments[keyword] if keyword in first.primary else "")
    obsids = sorted({n for m in masks for n in _obsids(m.card("OBSIDS"))})
    header["OBSID0"] = (obsids[0] if obsids else -1, "first OBSID of the masks merged")
    header["OBSID1"] = (obsids[-1] if obsids else -1, "last OBSID of the masks merged")
    header["OBSIDS"] = _string_card(obsid_ranges(obsids, sep=","), "OBSIDs of the masks merged")
    header["METHOD"] = ("bitwise or of the sources' DEFECTS bits", "per-pixel combination")
    header["NSOURCE"] = (len(masks), "masks merged: TESTn, RUNIDn, OBSIDSn, FILEn...")
    header["BUNIT"] = ("", "masks carry no unit")
    for keyword, name, value in bit_cards:
        header[keyword] = (name, f"DEFECTS bit {value} (cosmetics.py bits); 0 = good")
    for keyword in LIMIT_CARDS:
        values = {m.primary[keyword]: m for m in masks if keyword in m.primary}
        if values:
            source = next(iter(values.values()))
            header[keyword] = (next(iter(values)), source.primary.comments[keyword])
        if len(values) > 1:
            header.add_comment(f"{keyword} differs between sources: " +
                               ", ".join(f"{v} in source {masks.index(m) + 1}" for v, m in values.items()))
    for keyword, name, value in bit_cards:
        header[f"T{COUNT_CARDS.get(value, 'N' + keyword)}"[:8]] = (merged.total(value),
                                                                  f"pixels with bit {value} ({name}), whole FPA")
    header["TNMASKED"] = (merged.total(0), "pixels with any DEFECTS bit, whole FPA")
    for n, mask in enumerate(masks, start=1):
        for keyword, value, comment in ((f"TEST{n}", mask.card("TEST", "?"), "test"),
                                        (f"SESSN{n}", mask.card("SESSION"), "session"),
                                        (f"RUNID{n}", mask.card("RUNID"), "vison run that made it"),
                                        (f"OBSIDS{n}", mask.card("OBSIDS"), "OBSIDs"),
                                        (f"PROD{n}", mask.card("METHOD"), "how its defects were found"),
                                        (f"FILE{n}", str(mask.path.resolve()), "the mask file")):
            header[keyword] = _string_card(value, f"source {n}: {comment}")
    header.add_comment("Each extension: uint8 DEFECTS bits of its quadrant, oriented as the LE1 input (tile-"
                       "compressed, lossless), the bitwise or of the sources' extension of that name; pixels per "
                       "bit (NHOT, NDEAD, NLOW, NHIGH, NBADCPX; NBADCOL columns) and NMASKED (any bit). "
                       "MASK = DEFECTS != 0. The sources' per-quadrant thresholds are in the sources. "
                       "Source n: TESTn, SESSNn, RUNIDn, OBSIDSn, PRODn (how its defects were found), FILEn "
                       "(its path).")
    for n, mask in enumerate(masks, start=1):
        run = f" run {mask.card('RUNID')}" if mask.card("RUNID") else ""
        header.add_history(f"source {n}: {mask.card('TEST', '?')}{run} OBSIDs {mask.card('OBSIDS') or '-'} "
                           f"{mask.path.resolve()}")
        if "NSOURCE" in mask.primary:  # a merge merged again: its own sources' lines kept, marked "n>"
            for line in history_lines(mask.primary):
                header.add_history(f"{n}> {line}")
    return header
