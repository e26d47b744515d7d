"""Messages the app's workers and widgets post (toolong-style: all custom messages in one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from engine.campaign.config import Campaign
from engine.campaign.scripts import ScriptsWritten
from engine.campaign.sessions import SessionsBuilt

from .campaign_doc import Validation


@dataclass
class CampaignValidated(Message):
    """A validation worker finished; `generation` tells whether the text changed meanwhile."""

    generation: int
    validation: Validation


@dataclass
class CampaignChanged(Message):
    """The open campaign file or its last valid content changed (posted to the app)."""

    path: Path | None
    campaign: Campaign | None


@dataclass
class ScriptsDone(Message):
    result: ScriptsWritten


@dataclass
class SessionsDone(Message):
    result: SessionsBuilt


@dataclass
class EngineFailed(Message):
    """An engine call failed: `what` names the action, `lines` the problems, one per line."""

    what: str
    lines: list[str]


@dataclass
class DemoReady(Message):
    summary: str
