"""What the app keeps between its runs, per campaign file: the session lists edited on the Scripts
screen (they are not in the campaign TOML until the user puts them there). One small JSON file per
campaign under the per-user state folder (`$VISON_STATE_DIR`, default ~/.local/state/vison), in
`app/`; written whole or not at all. Losing it loses nothing but those edits.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def state_root() -> Path:
    explicit = os.environ.get("VISON_STATE_DIR")
    if explicit:
        return Path(explicit) / "app"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "vison" / "app"


def _state_file(campaign: Path) -> Path:
    key = hashlib.sha1(str(Path(os.path.abspath(campaign))).encode()).hexdigest()[:16]
    return state_root() / f"campaign-{key}.json"


def load_campaign_state(campaign: Path | None) -> dict[str, Any]:
    """What was kept for this campaign file ({} if nothing, or if it cannot be read)."""
    if campaign is None:
        return {}
    try:
        data = json.loads(_state_file(campaign).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("campaign") != str(Path(os.path.abspath(campaign))):
        return {}
    return data


def save_campaign_state(campaign: Path | None, **values: Any) -> None:
    """Merge `values` into what is kept for this campaign (failures are silent: a convenience)."""
    if campaign is None:
        return
    data = load_campaign_state(campaign)
    data.update(values, campaign=str(Path(os.path.abspath(campaign))))
    target = _state_file(campaign)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".state.", dir=target.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
        os.replace(staging, target)
    except OSError:
        pass


def saved_sessions(campaign: Path | None) -> tuple[dict[str, list[str]] | None, str | None]:
    """The session lists and sessions folder last edited for this campaign, or (None, None)."""
    data = load_campaign_state(campaign)
    sessions = data.get("sessions")
    if not isinstance(sessions, dict) or not all(isinstance(v, list) for v in sessions.values()):
        return None, None
    output = data.get("sessions_output")
    return {str(k): [str(t) for t in v] for k, v in sessions.items()}, (str(output) if output else None)
