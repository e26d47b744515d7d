"""Chamber (OGSE) profiles: exposure times to full well, filter wheel, best focus.

Profiles are TOML data in `configs/chambers/<NAME>.toml`; nothing here is executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..formats.tomlfile import ConfigError, load_toml
from ..paths import configs_dir


# The point-source mask's nominal spots, the same on every quadrant: (name, x, y) as fractions of
# the quadrant's image area seen in the frame (x along columns, y along rows, from the lower-left
# image pixel), vison's ALPHA..ECHO pattern. `[point_source.pattern]` in a profile replaces it.
DEFAULT_SPOT_PATTERN: tuple[tuple[str, float, float], ...] = (
    ("ALPHA", 0.2, 0.8), ("BRAVO", 0.8, 0.8), ("CHARLIE", 0.5, 0.5), ("DELTA", 0.2, 0.2), ("ECHO", 0.8, 0.2))


class ChamberError(ValueError):
    """A chamber profile that is missing or malformed; the message names file and key."""


@dataclass(frozen=True)
class ChamberProfile:
    name: str
    filter_wheel: dict[int, int]  # wheel position (script `wave`) -> nm
    tfwc_flat: dict[int, float]  # nm -> s to full well, flat source
    tfwc_point: dict[int, float]  # nm -> s to full well, point source
    best_focus_mm: dict[int, float]  # nm -> mirror position
    fwhm_px: float
    overheads: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    spot_pattern: tuple[tuple[str, float, float], ...] = DEFAULT_SPOT_PATTERN  # nominal spots (see above)

    def wheel_position(self, nm: int) -> int:
        """The filter-wheel position holding this wavelength (what scripts set as `wave`)."""
        for position, wavelength in self.filter_wheel.items():
            if wavelength == nm:
                return position
        raise ChamberError(f"chamber {self.name}: no filter of {nm} nm on the wheel {self.filter_wheel}")

    def wavelength(self, wheel_position: int) -> int:
        try:
            return self.filter_wheel[int(wheel_position)]
        except KeyError:
            raise ChamberError(f"chamber {self.name}: no filter-wheel position F{wheel_position}") from None

    def flat_time(self, nm: int, fraction: float) -> float:
        """Exposure time (s) reaching `fraction` of full well with the flat source."""
        return fraction * self._lookup(self.tfwc_flat, nm, "tfwc_flat")

    def point_time(self, nm: int, fraction: float) -> float:
        return fraction * self._lookup(self.tfwc_point, nm, "tfwc_point")

    def focus(self, nm: int) -> float:
        return self._lookup(self.best_focus_mm, nm, "best_focus_mm")

    def _lookup(self, table: dict[int, float], nm: int, name: str) -> float:
        try:
            return table[nm]
        except KeyError:
            raise ChamberError(f"chamber {self.name}: [{name}] has no entry for {nm} nm") from None


def chambers_dir() -> Path:
    return configs_dir() / "chambers"


def available_chambers() -> list[str]:
    return sorted(p.stem for p in chambers_dir().glob("*.toml"))


def load_chamber(name_or_path: str | Path | None = None) -> ChamberProfile:
    """Load a chamber profile by name (configs/chambers/<name>.toml) or path; None = default."""
    if name_or_path is None:
        name_or_path = "default"
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = chambers_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        raise ChamberError(
            f"no chamber profile {name_or_path!r}: expected {path} (known: {', '.join(available_chambers())})"
        )
    try:
        data = load_toml(path).data
    except ConfigError as exc:  # syntax, encoding, values nested too deep: file, line and key
        raise ChamberError(str(exc)) from None
    try:
        wheel = {int(k.lstrip("Ff")): int(v) for k, v in data["filter_wheel"].items()}
        return ChamberProfile(
            name=str(data.get("name", path.stem)),
            filter_wheel=wheel,
            tfwc_flat=_per_nm(data["tfwc_flat"]),
            tfwc_point=_per_nm(data["tfwc_point"]),
            best_focus_mm=_per_nm(data["best_focus_mm"]),
            fwhm_px=float(data["point_source"]["fwhm_px"]),
            overheads={k: float(v) for k, v in data.get("overheads", {}).items()},
            path=path,
            spot_pattern=_spot_pattern(data["point_source"].get("pattern")),
        )
    except KeyError as exc:
        raise ChamberError(f"{path}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ChamberError(f"{path}: {exc}") from None


def _spot_pattern(table: object) -> tuple[tuple[str, float, float], ...]:
    """`[point_source.pattern]`: NAME = [x, y], fractions of the image area in [0, 1]."""
    if table is None:
        return DEFAULT_SPOT_PATTERN
    if not isinstance(table, dict) or not table:
        raise ValueError("[point_source.pattern] must name spots: NAME = [x, y] (fractions of the image area)")
    spots = []
    for name, xy in table.items():
        if not (isinstance(xy, list) and len(xy) == 2 and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in xy)):
            raise ValueError(f"[point_source.pattern] {name} = {xy!r}: expected [x, y] fractions in [0, 1]")
        spots.append((str(name), float(xy[0]), float(xy[1])))
    return tuple(spots)


def _per_nm(table: dict[str, object]) -> dict[int, float]:
    return {int(k): float(v) for k, v in table.items()}  # type: ignore[arg-type]
