"""Matching and scoring settings: one typed object, loaded from and saved to YAML or JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certain: float = Field(0.995, gt=0, lt=1, description="Safe to merge without a person, if the policy allows.")
    probable: float = Field(0.9, gt=0, lt=1, description="An admin should look; pairs at or above it form groups.")
    possible: float = Field(0.5, gt=0, lt=1, description="Shown on request.")

    @model_validator(mode="after")
    def _ordered(self):
        if not self.possible <= self.probable <= self.certain:
            raise ValueError(f"thresholds must satisfy possible <= probable <= certain, got possible={self.possible}, "
                             f"probable={self.probable}, certain={self.certain}")
        return self


class MatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field("RU", description="Default phone region (ISO 3166 code) for numbers without a country code.")
    provider_rules: bool = Field(True, description="Ignore dots and +tags where the mail provider does (gmail...).")
    block_cap: int = Field(20, ge=2, description="Blocking keys held by more records than this are skipped and "
                           "reported (at a million contacts: 20 keeps 99.7% of the true pairs with a quarter of "
                           "the candidate pairs of 50).")
    neighbourhood_window: int = Field(4, ge=2, description="Sorted-neighbourhood window.")
    seed: int = 42
    workers: int = Field(0, ge=0, description="Processes that normalise the phones and e-mails of a large table "
                         "and, in the dedup flow, read the database, build merge plans and write the report alongside "
                         "(0: one per "
                         "CPU, at most 4; 1: this process only). The results do not depend on it.")
    random_pairs: int = Field(300_000, ge=1000, description="Random pairs sampled to estimate u.")
    model: Literal["fellegi-sunter", "supervised"] = "fellegi-sunter"
    model_path: str | None = Field(None, description="Load a trained model (JSON) instead of training one.")
    thresholds: Thresholds = Thresholds()
    deterministic_rules: bool = Field(True, description="Same valid phone and same full name is certain.")
    hold_rules: bool = Field(True, description="Hold at 'possible' pairs that agree only on names, or whose first "
                             "names or patronymics differ, unless a birthdate or tax id agrees.")
    chain_guard: bool = Field(True, description="Keep apart records that disagree strongly even if a third links both.")
    chain_guard_probability: float = Field(0.05, ge=0, lt=1, description="Pairs below this probability never share a group.")
    chain_guard_max_group: int = Field(200, ge=3, description="Larger components are split by threshold only.")
    primary_rule: Literal["bitrix", "oldest", "newest", "most_complete", "custom"] = "bitrix"
    tie_policy: Literal["id", "leave"] = Field("id", description="'id': lowest id wins a tie; 'leave': a person decides.")
    citation_weights: dict[str, float] = Field(
        default_factory=lambda: {"deals": 3.0, "invoices": 2.0, "quotes": 1.0, "activities": 1.0, "tasks": 1.0,
                                 "history": 0.0},
        description="Weight of each kind of linked record in the citation index.")

    @property
    def processes(self) -> int:
        """How many processes ``workers`` asks for (0: one per CPU, at most 4)."""
        return self.workers or min(os.cpu_count() or 1, 4)

    @classmethod
    def load(cls, path: str | Path | None) -> "MatchSettings":
        if path is None:
            return cls()
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"Cannot read settings from {path}: {exc}") from exc
        return cls.from_dict(data.get("match", data), source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "settings") -> "MatchSettings":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(explain(exc, source)) from exc

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump({"match": self.model_dump()}, allow_unicode=True, sort_keys=False))


class SettingsError(ValueError):
    """Every problem of a settings file at once, each naming the field and the fix."""


def explain(exc: ValidationError, source: str) -> str:
    return explain_problems([(None, err) for err in exc.errors()], source)


def explain_problems(problems: list[tuple[str | None, dict]], source: str) -> str:
    """Pydantic errors as one message: each named by its section (when given) and field."""
    lines = [f"{source} has {len(problems)} problem(s):"]
    for section, err in problems:
        where = ".".join(str(x) for x in ([section] if section else []) + list(err["loc"])) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"  - {where}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)
