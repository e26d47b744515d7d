"""Where the shipped TOML data (chamber profiles, HK limits, templates) live."""

from __future__ import annotations

import os
from pathlib import Path


def configs_dir() -> Path:
    """The `configs/` folder shipped with vison (override with VISON_CONFIGS)."""
    override = os.environ.get("VISON_CONFIGS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "configs"
