"""Merge settings: the rule for each field of each entity type, the conflict policy and the delete mode.

``MergeSettings.load()`` gives the defaults (default_rules.yaml, Bitrix24 behaviour);
``MergeSettings.load(path)`` overlays a YAML file that names only what it changes. Every problem in a
settings file is reported at once, each naming the field and the fix.
"""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crm.schema import COMM_TYPES, ENTITY_TABLES, ENTITY_TYPES
from merge_rules.normalise import validator_for
from merge_rules.rules import DATE, FLAG, MULTI, NUMBER, REF, RULES, TEXT

DEFAULTS_FILE = Path(__file__).with_name("default_rules.yaml")
# Columns no rule decides: the id, the merge's own timestamp, and the deletion mark.
NOT_MERGED = ("id", "modified_at", "deleted_at")


class SettingsError(ValueError):
    """A settings file that cannot be used; the message lists every problem and its fix."""


@functools.cache
def field_kinds(entity_type: str) -> dict[str, str]:
    """Every mergeable field of an entity type and its kind (text, date, number, ref, flag, multi)."""
    kinds: dict[str, str] = {}
    for col in ENTITY_TABLES[entity_type].columns:
        if col.name in NOT_MERGED:
            continue
        if col.foreign_keys:
            kinds[col.name] = REF
        elif isinstance(col.type, (sa.Date, sa.DateTime)):
            kinds[col.name] = DATE
        elif isinstance(col.type, sa.Boolean):
            kinds[col.name] = FLAG
        elif isinstance(col.type, (sa.Integer, sa.Numeric, sa.Float)):
            kinds[col.name] = NUMBER
        else:
            kinds[col.name] = TEXT
    for comm_type in COMM_TYPES:
        kinds[comm_type] = MULTI
    return kinds


@functools.cache
def _default_file() -> dict[str, Any]:
    return yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))


def _default_fields() -> dict[str, dict[str, str]]:
    return copy.deepcopy(_default_file()["fields"])


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class MergeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict[str, dict[str, str]] = Field(
        default_factory=_default_fields, validate_default=True,
        description="entity type -> field -> rule name; fields not named keep the default rule")
    conflict_policy: Literal["ask", "keep_primary", "most_common", "most_recent", "longest"] = Field(
        "ask", description="how a conflict is settled: ask a person, or resolve it automatically")
    delete_mode: Literal["soft", "hard"] = Field(
        "soft", description="soft: set deleted_at on the duplicates; hard: delete their rows")

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        problems: list[str] = []
        merged = _default_fields()
        for entity, table in value.items():
            if entity not in ENTITY_TYPES:
                problems.append(f"fields.{entity}: unknown entity type{_suggest(entity, ENTITY_TYPES)}; "
                                f"use one of {', '.join(ENTITY_TYPES)}")
                continue
            if not isinstance(table, dict):
                problems.append(f"fields.{entity}: expected a mapping of field: rule, got {table!r}")
                continue
            kinds = field_kinds(entity)
            for field, rule in table.items():
                where = f"fields.{entity}.{field}"
                if field not in kinds:
                    problems.append(f"{where}: {entity} has no field {field!r}{_suggest(field, kinds)}; "
                                    f"its fields are {', '.join(kinds)}")
                    continue
                kind = kinds[field]
                fits = sorted(name for name, r in RULES.items() if kind in r.kinds)
                if rule not in RULES:
                    problems.append(f"{where}: unknown rule {rule!r}{_suggest(str(rule), RULES)}; "
                                    f"for a {kind} field use one of {', '.join(fits)}")
                elif kind not in RULES[rule].kinds:
                    problems.append(f"{where}: rule {rule!r} does not work on a {kind} field; "
                                    f"use one of {', '.join(fits)}")
                elif rule == "prefer_valid" and validator_for(field) is None:
                    problems.append(f"{where}: 'prefer_valid' has no validity check for {field!r} "
                                    "(only tax_id, website and phone/email-like fields); use fill_empty")
                else:
                    merged[entity][field] = rule
        if problems:
            raise ValueError(f"{len(problems)} problem(s) in the merge rules:\n" + "\n".join(f"- {p}" for p in problems))
        return merged

    def rule_for(self, entity_type: str, field: str) -> str:
        return self.fields.get(entity_type, {}).get(field) or (
            "union" if field_kinds(entity_type).get(field) == MULTI else "fill_empty")

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MergeSettings":
        """The defaults, overlaid with the YAML file at ``path`` when one is given."""
        data: dict[str, Any] = copy.deepcopy(_default_file())
        if path is not None:
            p = Path(path)
            try:
                given = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except OSError as exc:
                raise SettingsError(f"Cannot read the merge settings file {p}: {exc.strerror}.") from exc
            except yaml.YAMLError as exc:
                raise SettingsError(f"The merge settings file {p} is not valid YAML: {exc}") from exc
            if not isinstance(given, dict):
                raise SettingsError(f"The merge settings file {p} must hold a mapping "
                                    "(conflict_policy, delete_mode, fields), not {type(given).__name__}.")
            for key, val in given.items():
                if key == "fields" and isinstance(val, dict):
                    data["fields"] = val  # the validator overlays it on the defaults
                else:
                    data[key] = val
        try:
            return cls(**data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "settings"
                msg = str(err["msg"]).removeprefix("Value error, ")
                lines.append(f"{loc}: {msg}")
            source = f"the merge settings file {path}" if path else "the default merge settings"
            raise SettingsError(f"Problems in {source}:\n" + "\n".join(lines)) from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(), allow_unicode=True, sort_keys=False),
                              encoding="utf-8")
