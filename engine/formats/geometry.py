"""CCD273 frame geometry: where each quadrant and each of its regions lie in an ELVIS frame.

Array convention is numpy's view of the FITS image: `frame[row, col]`, row 0 at the bottom.
Quadrants: H bottom-left, G bottom-right, E top-left, F top-right. Each quadrant is read from
its outer corner, so its *canonical* orientation (output node at [0, 0], prescan first) is:
H as is, G flipped left-right, E flipped top-bottom, F flipped both ways.

Canonical columns: [0, prescan) prescan, then image columns, then serial overscan (then, only in
ground data put into LE1 quadrants, `fill_cols` columns of fill: no region).
Canonical rows: [0, image_rows) image, then parallel overscan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUADRANTS: tuple[str, ...] = ("E", "F", "G", "H")
REGIONS: tuple[str, ...] = ("prescan", "image", "overscan", "parallel_overscan")

# (row half, column half) of each quadrant: 0 = bottom/left, 1 = top/right.
_PLACEMENT = {"H": (0, 0), "G": (0, 1), "E": (1, 0), "F": (1, 1)}
# (flip rows, flip columns) taking a quadrant from frame orientation to canonical orientation.
_FLIPS = {"H": (False, False), "G": (False, True), "E": (True, False), "F": (True, True)}
# Electrical CCD halves as ELVIS names them in voltages and HK: E, F = "B"; G, H = "T".
HALF_OF_QUADRANT = {"E": "B", "F": "B", "G": "T", "H": "T"}


@dataclass(frozen=True)
class CCDGeometry:
    """Pixel layout of one CCD frame; every number is per quadrant."""

    prescan: int = 51
    image_cols: int = 2048
    overscan: int = 20
    image_rows: int = 2066
    parallel_overscan: int = 20
    name: str = "full"
    fill_cols: int = 0  # after the serial overscan: ground data padded to LE1's 2128 columns (fill value 0)

    @property
    def quad_width(self) -> int:
        return self.prescan + self.image_cols + self.overscan + self.fill_cols

    @property
    def quad_height(self) -> int:
        return self.image_rows + self.parallel_overscan

    @property
    def naxis1(self) -> int:
        return 2 * self.quad_width

    @property
    def naxis2(self) -> int:
        return 2 * self.quad_height

    @property
    def shape(self) -> tuple[int, int]:
        """numpy shape of a frame: (NAXIS2, NAXIS1)."""
        return (self.naxis2, self.naxis1)

    @property
    def image_pixels(self) -> int:
        return self.image_cols * self.image_rows

    # -- quadrants ---------------------------------------------------------------------------

    def quadrant_slices(self, quadrant: str) -> tuple[slice, slice]:
        """(rows, cols) of a quadrant in the frame."""
        row_half, col_half = _PLACEMENT[_check_quadrant(quadrant)]
        rows = slice(row_half * self.quad_height, (row_half + 1) * self.quad_height)
        cols = slice(col_half * self.quad_width, (col_half + 1) * self.quad_width)
        return rows, cols

    @staticmethod
    def flips(quadrant: str) -> tuple[bool, bool]:
        """(flip rows, flip cols) from frame to canonical orientation (its own inverse)."""
        return _FLIPS[_check_quadrant(quadrant)]

    def quadrant(self, frame: np.ndarray, quadrant: str, canonical: bool = True) -> np.ndarray:
        """A view of one quadrant; canonical puts the output node at [0, 0]."""
        self._check_frame(frame)
        rows, cols = self.quadrant_slices(quadrant)
        view = frame[rows, cols]
        return self.to_canonical(view, quadrant) if canonical else view

    @staticmethod
    def to_canonical(quadrant_array: np.ndarray, quadrant: str) -> np.ndarray:
        """Flip a quadrant from frame orientation to canonical (and back: flips are involutions)."""
        flip_rows, flip_cols = _FLIPS[_check_quadrant(quadrant)]
        view = quadrant_array
        if flip_rows:
            view = view[::-1, :]
        if flip_cols:
            view = view[:, ::-1]
        return view

    def put_quadrant(self, frame: np.ndarray, quadrant: str, canonical_data: np.ndarray) -> None:
        """Write a canonical-orientation quadrant into its place in the frame."""
        self._check_frame(frame)
        rows, cols = self.quadrant_slices(quadrant)
        frame[rows, cols] = self.to_canonical(canonical_data, quadrant)

    # -- regions -----------------------------------------------------------------------------

    def canonical_region(self, region: str) -> tuple[slice, slice]:
        """(rows, cols) of a region in canonical quadrant coordinates.

        prescan, image and overscan span the image rows; parallel_overscan spans the image columns.
        """
        image_cols = slice(self.prescan, self.prescan + self.image_cols)
        image_rows = slice(0, self.image_rows)
        if region == "prescan":
            return image_rows, slice(0, self.prescan)
        if region == "image":
            return image_rows, image_cols
        if region == "overscan":
            return image_rows, slice(self.prescan + self.image_cols, self.prescan + self.image_cols + self.overscan)
        if region == "parallel_overscan":
            return slice(self.image_rows, self.quad_height), image_cols
        raise ValueError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")

    def region(self, frame: np.ndarray, quadrant: str, region: str) -> np.ndarray:
        """A view of one region of one quadrant, in canonical orientation."""
        rows, cols = self.canonical_region(region)
        return self.quadrant(frame, quadrant, canonical=True)[rows, cols]

    def frame_region_slices(self, quadrant: str, region: str) -> tuple[slice, slice]:
        """(rows, cols) of a region in frame coordinates: what to read from disk for a section."""
        q_rows, q_cols = self.quadrant_slices(quadrant)
        c_rows, c_cols = self.canonical_region(region)
        flip_rows, flip_cols = self.flips(quadrant)
        rows = _unflip(c_rows, self.quad_height, flip_rows)
        cols = _unflip(c_cols, self.quad_width, flip_cols)
        return (
            slice(q_rows.start + rows.start, q_rows.start + rows.stop),
            slice(q_cols.start + cols.start, q_cols.start + cols.stop),
        )

    def window_mask(self, vstart: int, vend: int) -> np.ndarray:
        """Canonical-quadrant boolean rows read by an ELVIS window [vstart, vend)."""
        rows = np.arange(self.quad_height)
        return (rows >= vstart) & (rows < vend)

    def _check_frame(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape:
            raise ValueError(
                f"frame shape {frame.shape} does not match the {self.name} geometry {self.shape}"
            )


def _unflip(span: slice, length: int, flipped: bool) -> slice:
    if not flipped:
        return span
    return slice(length - span.stop, length - span.start)


def _check_quadrant(quadrant: str) -> str:
    if quadrant not in _PLACEMENT:
        raise ValueError(f"unknown quadrant {quadrant!r}; expected one of E, F, G, H")
    return quadrant


FULL = CCDGeometry()
"""The CCD273 as ELVIS reads it on ground: 4238 x 4172 pixels."""

SMALL = CCDGeometry(prescan=12, image_cols=64, overscan=6, image_rows=64, parallel_overscan=6, name="small")
"""Same structure, scaled down, for tests and quick demos: 164 x 140 pixels."""

SMALL_OBLONG = CCDGeometry(prescan=12, image_cols=48, overscan=6, image_rows=64, parallel_overscan=6,
                           name="small-oblong")
"""SMALL with fewer image columns than rows, for tests a swapped row/column cannot pass: 132 x 140 pixels."""

MEDIUM = CCDGeometry(prescan=12, image_cols=160, overscan=6, image_rows=160, parallel_overscan=6, name="medium")
"""Room for point-source tests: spots 48 px apart, a pattern shifted by 20 px stays on the image: 356 x 332 pixels."""

GEOMETRIES = {"full": FULL, "small": SMALL, "small-oblong": SMALL_OBLONG, "medium": MEDIUM}


def geometry_for_shape(shape: tuple[int, int], overscan_candidates: tuple[int, ...] = (20, 29)) -> CCDGeometry:
    """The geometry whose frame has this numpy shape (full, the small ones, or full with 29 overscan)."""
    for geometry in GEOMETRIES.values():
        if geometry.shape == tuple(shape):
            return geometry
    for overscan in overscan_candidates:
        candidate = CCDGeometry(overscan=overscan, name=f"full-ovs{overscan}")
        if candidate.shape == tuple(shape):
            return candidate
    raise ValueError(
        f"frame shape {tuple(shape)} matches no known CCD273 geometry "
        f"(full {FULL.shape}, small {SMALL.shape})"
    )
