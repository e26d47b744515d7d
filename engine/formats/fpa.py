"""The VIS focal plane (FPA): where each of the 36 CCDs, their 12 blocks and their 144 quadrants sit.

Pure data and index arithmetic (no I/O), used by the LE1 reader (le1.py), the LE1 simulator and
the FPA maps. Facts from vison's `fpa_dm.py` (reference notes, data model section 8):

- 6 slices (j) x 6 columns (i); CCD `C_<j><i>`, C_11..C_66. Slice j holds one block in columns
  1-3 as its CCD1, CCD2, CCD3 and another in columns 4-6 as its CCD3, CCD2, CCD1.
- Two designs: "initial", and "final" (the one flown) where OWEN replaces SKLODOWSKA and EINSTEIN
  replaces MAX (slices 4 and 5, columns 4-6).
- LE1 extension of (j, i, quadrant): HDU (j-1)*24 + (i-1)*4 + 1 + k, EXTNAME `j-i.Q`; the order k
  within a CCD is E, F, G, H in columns 1-3 and G, H, E, F in columns 4-6. The extension holds
  the canonical quadrant (output node at [0, 0]) flipped by the position's (x, y) flags:
  k=0 (0,0), k=1 (1,0), k=2 (1,1), k=3 (0,1).
- Mosaic: CCD (j, i) covers quadrant cells x 2(i-1)..2(i-1)+1, y 2(j-1)..2(j-1)+1 (y up, slice 1
  at the bottom); inside it a quadrant sits at (x, y) = E(0,0) F(1,0) G(1,1) H(0,1) in columns
  1-3 and E(1,1) F(0,1) G(0,0) H(1,0) in columns 4-6, its extension image placed as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

SLICES = 6
COLUMNS = 6
CCDS = SLICES * COLUMNS
QUADRANTS_PER_CCD = 4
LE1_EXTENSIONS = CCDS * QUADRANTS_PER_CCD  # 144 quadrant images after the empty primary
DESIGNS = ("final", "initial")
DEFAULT_DESIGN = "final"

# Quadrant order inside a CCD's 4 extensions, and each position's (flip x = columns, flip y = rows)
_ORDER = {"left": ("E", "F", "G", "H"), "right": ("G", "H", "E", "F")}
_POSITION_FLIPS = ((False, False), (True, False), (True, True), (False, True))
# Quadrant cell (x, y) inside a CCD's 2 x 2 cells of the mosaic
_MOSAIC_CELL = {"left": {"E": (0, 0), "F": (1, 0), "G": (1, 1), "H": (0, 1)},
                "right": {"E": (1, 1), "F": (0, 1), "G": (0, 0), "H": (1, 0)}}

# slice -> (block in columns 1-3, block in columns 4-6)
_BLOCKS = {
    "initial": {1: ("BORN", "DIRAC"), 2: ("GUYE", "FOWLER"), 3: ("ERWIN", "KRAMERS"),
                4: ("JULES2", "SKLODOWSKA"), 5: ("LORENTZ", "MAX"), 6: ("NIELS", "CURIE")},
}
_BLOCKS["final"] = {**_BLOCKS["initial"], 4: ("JULES2", "OWEN"), 5: ("LORENTZ", "EINSTEIN")}

# block -> serials of its CCD1, CCD2, CCD3 (vison fpa_dm.py FPA_MAP_initial / FPA_MAP_final)
CCD_SERIALS: dict[str, tuple[str, str, str]] = {
    "BORN": ("15081-08-02", "15081-16-02", "15081-22-02"),
    "DIRAC": ("15081-07-02", "14471-01-02", "14313-02-01"),
    "GUYE": ("14462-13-02", "14313-17-01", "14313-23-01"),
    "FOWLER": ("14311-20-02", "14311-05-02", "14313-13-01"),
    "ERWIN": ("15053-01-02", "14352-04-02", "14471-16-01"),
    "KRAMERS": ("14362-20-02", "14462-16-01", "14471-15-01"),
    "JULES2": ("14462-02-01", "14462-10-01", "14313-06-01"),
    "SKLODOWSKA": ("14471-20-02", "14313-08-01", "14313-24-02"),
    "OWEN": ("14462-02-02", "14311-16-02", "14362-12-01"),
    "LORENTZ": ("15053-02-02", "15053-20-02", "15081-22-01"),
    "MAX": ("15081-21-01", "15081-17-01", "15081-15-01"),
    "EINSTEIN": ("14471-19-01", "15081-15-02", "14471-10-02"),
    "NIELS": ("14471-01-01", "15081-20-02", "15053-01-01"),
    "CURIE": ("14301-24-01", "15081-21-02", "14462-08-01"),
}


@dataclass(frozen=True)
class FPACCD:
    """One CCD of the focal plane and the block CCD it is."""

    slice: int  # j, 1..6 (mosaic rows, slice 1 at the bottom)
    column: int  # i, 1..6
    block: str
    block_ccd: int  # 1..3: CCD<n> of its block (ELVIS numbering)
    serial: str

    @property
    def ccdid(self) -> str:
        return f"C_{self.slice}{self.column}"

    @property
    def side(self) -> str:
        """"left" for columns 1-3 (block as CCD1..3), "right" for 4-6 (block as CCD3..1)."""
        return "left" if self.column <= 3 else "right"


@dataclass(frozen=True)
class FPAQuadrant:
    """One quadrant of the focal plane: its CCD, its letter, its LE1 extension and mosaic cell."""

    ccd: FPACCD
    quadrant: str  # E, F, G, H
    position: int  # k, 0..3: its place among the CCD's 4 extensions

    @property
    def extname(self) -> str:
        return f"{self.ccd.slice}-{self.ccd.column}.{self.quadrant}"

    @property
    def hdu(self) -> int:
        """Index of its HDU in an LE1 file (0 is the empty primary)."""
        return (self.ccd.slice - 1) * 24 + (self.ccd.column - 1) * 4 + 1 + self.position

    @property
    def flip_cols(self) -> bool:
        """The extension holds the canonical quadrant flipped left-right (x flag)."""
        return _POSITION_FLIPS[self.position][0]

    @property
    def flip_rows(self) -> bool:
        """The extension holds the canonical quadrant flipped top-bottom (y flag)."""
        return _POSITION_FLIPS[self.position][1]

    @property
    def mosaic_cell(self) -> tuple[int, int]:
        """(x, y) of its cell in the 12 x 12 quadrant grid of the mosaic, y up."""
        dx, dy = _MOSAIC_CELL[self.ccd.side][self.quadrant]
        return 2 * (self.ccd.column - 1) + dx, 2 * (self.ccd.slice - 1) + dy


class FPALayout:
    """The focal plane of one design: CCDs by id, quadrants in LE1 HDU order, block CCD lookup."""

    def __init__(self, design: str = DEFAULT_DESIGN):
        if design not in DESIGNS:
            raise ValueError(f"unknown FPA design {design!r}; expected one of {', '.join(DESIGNS)}")
        self.design = design
        self.ccds: dict[str, FPACCD] = {}
        for j in range(1, SLICES + 1):
            left, right = _BLOCKS[design][j]
            for i in range(1, COLUMNS + 1):
                block, block_ccd = (left, i) if i <= 3 else (right, 7 - i)
                ccd = FPACCD(j, i, block, block_ccd, CCD_SERIALS[block][block_ccd - 1])
                self.ccds[ccd.ccdid] = ccd
        self.quadrants: tuple[FPAQuadrant, ...] = tuple(
            FPAQuadrant(ccd, q, k) for ccd in self.ccds.values() for k, q in enumerate(_ORDER[ccd.side]))
        self._by_extname = {q.extname: q for q in self.quadrants}
        self._by_block = {(c.block, c.block_ccd): c for c in self.ccds.values()}

    @property
    def blocks(self) -> list[str]:
        return list(dict.fromkeys(c.block for c in self.ccds.values()))

    def ccd(self, ccdid: str) -> FPACCD:
        try:
            return self.ccds[ccdid]
        except KeyError:
            raise KeyError(f"no CCD {ccdid!r} in the FPA: expected C_11..C_66") from None

    def quadrant(self, ccdid: str, quadrant: str) -> FPAQuadrant:
        ccd = self.ccd(ccdid)
        return self.by_extname(f"{ccd.slice}-{ccd.column}.{quadrant}")

    def by_extname(self, extname: str) -> FPAQuadrant:
        try:
            return self._by_extname[extname]
        except KeyError:
            raise KeyError(f"{extname!r} is no LE1 quadrant extension: expected 'j-i.Q', j and i 1..6, "
                           "Q one of E, F, G, H (e.g. '1-1.E')") from None

    def is_extname(self, extname: str) -> bool:
        return extname in self._by_extname

    def position_of(self, block: str, block_ccd: int) -> FPACCD | None:
        """Where CCD<block_ccd> of `block` sits in this design (None: not in it)."""
        return self._by_block.get((block.upper(), int(block_ccd)))


@cache
def fpa_layout(design: str = DEFAULT_DESIGN) -> FPALayout:
    return FPALayout(design)


def place_of_block_ccd(block: str, block_ccd: int) -> FPACCD | None:
    """Where a block's CCD sits: in the final design, else in the initial one (SKLODOWSKA, MAX)."""
    for design in DESIGNS:
        found = fpa_layout(design).position_of(block, block_ccd)
        if found is not None:
            return found
    return None
