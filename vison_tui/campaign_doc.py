"""The campaign TOML as text being edited: validation of unsaved text, form fields, saving.

No Textual here: screens call these functions (validation runs in a worker thread), tests call them
directly. Edits from the form go through tomlkit so that the user's comments and layout survive.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from engine.campaign.config import Campaign, ConfigError, ConfigProblem, campaign_from_dict
from engine.formats.tomlfile import parse_toml_text


@dataclass(frozen=True)
class Validation:
    """The outcome of validating one version of the text."""

    text: str
    campaign: Campaign | None
    problems: tuple[ConfigProblem, ...]

    @property
    def ok(self) -> bool:
        return self.campaign is not None and not self.problems

    def problems_on_line(self, line: int) -> list[ConfigProblem]:
        return [p for p in self.problems if p.line == line]


def validate_campaign_text(text: str, path: Path) -> Validation:
    """Validate unsaved text as the engine would validate the file at `path` (relative paths from its folder)."""
    source = Path(os.path.abspath(path))
    try:
        doc = parse_toml_text(text, source)
        from engine.tasks.registry import campaign_schema  # the analysis modules: loaded when first validating

        campaign = campaign_from_dict(doc.data, base_dir=source.parent, doc=doc, source=source,
                                      families=campaign_schema())
    except ConfigError as exc:
        return Validation(text, None, tuple(exc.problems))
    except Exception as exc:  # an engine bug must show as a problem, never crash the editor
        problem = ConfigProblem(source, None, "", f"internal error while validating: {type(exc).__name__}: {exc}")
        return Validation(text, None, (problem,))
    return Validation(text, campaign, ())


def save_text(path: Path, text: str) -> None:
    """Write the file whole or not at all (a crash mid-write must not leave half a campaign)."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".saving", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        if mode is not None:
            os.chmod(staging, mode)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.unlink(staging)
        raise


# ---------------------------------------------------------------------------------------------------
# The form view's fields
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FormField:
    table: str
    key: str
    label: str
    required: bool = False
    hint: str = ""

    @property
    def id(self) -> str:
        """A widget id: "campaign-block"."""
        return f"{self.table}-{self.key}"


FORM_FIELDS: tuple[FormField, ...] = (
    FormField("campaign", "block", "Block", required=True, hint="e.g. NOSTROMO"),
    FormField("campaign", "chamber", "Chamber", hint="chamber profile (configs/chambers)"),
    FormField("campaign", "operator", "Operator", hint="who runs the campaign"),
    FormField("campaign", "elvis", "ELVIS version", hint="default 7.5.X"),
    FormField("hardware", "roe", "ROE serial", hint="e.g. FM14"),
    FormField("hardware", "rpsu", "RPSU serial", hint="e.g. FM14"),
    FormField("hardware", "ccd1", "CCD1 serial", hint="e.g. 14888-88-81"),
    FormField("hardware", "ccd2", "CCD2 serial"),
    FormField("hardware", "ccd3", "CCD3 serial"),
    FormField("paths", "data", "Data folder", required=True, hint="holds the day folders"),
    FormField("paths", "results", "Results folder", required=True),
)


class FormError(ValueError):
    """The text cannot be shown in the form (a TOML syntax error, or a section that is not a table)."""


def _parse(text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise FormError(f"the TOML has a syntax error ({exc}); fix it in the editor first") from None


def read_form_values(text: str) -> dict[str, str]:
    """Each form field's current value as text ("" when the key is absent)."""
    doc = _parse(text)
    values = {}
    for field in FORM_FIELDS:
        table = doc.get(field.table)
        value = table.get(field.key) if isinstance(table, dict) else None
        values[field.id] = "" if value is None else str(value)
    return values


def write_form_value(text: str, field: FormField, value: str) -> str:
    """The text with one field set (an empty optional field removes its key); comments are kept."""
    doc = _parse(text)
    value = value.strip()
    table = doc.get(field.table)
    if table is None:
        if not value:
            return text
        table = tomlkit.table()
        doc[field.table] = table
        table = doc[field.table]
    elif not isinstance(table, dict):
        raise FormError(f"{field.table} is not a table in the TOML; fix it in the editor")
    if value or field.required:
        table[field.key] = value
    elif field.key in table:
        del table[field.key]
    return tomlkit.dumps(doc)
