"""Matching and scoring settings: one typed object, loaded from and saved to YAML or JSON."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from scoring.primary import RULES

# Kinds of linked record the citation index counts (crm/readers.py citation_counts) and their default weights.
CITATION_WEIGHTS = {"deals": 3.0, "invoices": 2.0, "quotes": 1.0, "activities": 1.0, "tasks": 1.0, "history": 0.0}
# Columns the dedup pipeline gives the primary ranking: the record's own facts (scoring/find.py) and
# crm/readers.py record_info. A rule's other criteria must come from whoever calls find_duplicates.
PIPELINE_CRITERIA = frozenset({"editable", "citations", "modified_at", "created_at", "completeness"})
REGION_EXAMPLES = "RU, KZ, BY, UA, US, DE, GB"


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
    region: str = Field("RU", description="Default phone region for numbers without a country code: a two-letter "
                        "ISO 3166 code phonenumbers knows (RU, KZ, US...); lower case is read as upper case.")
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
                             "names or patronymics differ, unless a birthdate or tax id agrees; and companies with "
                             "one INN and two KPPs (branches of one firm). scoring/find.py lists every rule.")
    chain_guard: bool = Field(True, description="Keep apart records that disagree strongly even if a third links both.")
    chain_guard_probability: float = Field(0.05, ge=0, lt=1, description="Pairs below this probability never share a group.")
    chain_guard_max_group: int = Field(200, ge=3, description="Larger components are split by threshold only.")
    primary_rule: Literal["bitrix", "oldest", "newest", "most_complete", "custom"] = Field(
        "bitrix", description="How the primary of a group is chosen (scoring/primary.py RULES). 'custom' ranks by a "
                              "custom_score per record that no settings key and no part of the dedup pipeline "
                              "gives: it is refused unless a Python caller of find_duplicates, whose record_info "
                              "holds custom_score, validates with context={'criteria': ['custom_score']}.")
    tie_policy: Literal["id", "leave"] = Field("id", description="'id': lowest id wins a tie; 'leave': a person decides.")
    citation_weights: dict[str, float] = Field(
        default_factory=lambda: dict(CITATION_WEIGHTS),
        description="Weight (0 or more; 0 leaves the kind out) of each kind of linked record in the citation "
                    "index: deals, invoices, quotes, activities, tasks, history. Overlaid on the defaults: kinds "
                    "not named keep their default weight.")

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        code = value.strip().upper()
        if code in phonenumbers.SUPPORTED_REGIONS:
            return code
        hint = {"UK": " (did you mean 'GB'?)"}.get(code, "")
        if len(code) == 3 and code.isalpha():
            hint = " (a three-letter code: use the two-letter one, RU not RUS)"
        raise ValueError(f"unknown phone region {value!r}{hint}; use a two-letter ISO 3166 code phonenumbers "
                         f"knows, e.g. {REGION_EXAMPLES} ({len(phonenumbers.SUPPORTED_REGIONS)} in all)")

    @field_validator("citation_weights")
    @classmethod
    def _overlay_citation_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = [f"{kind!r}{_suggest(kind, CITATION_WEIGHTS)}" for kind in value if kind not in CITATION_WEIGHTS]
        problems = [f"unknown kind of linked record {', '.join(unknown)}; the citation index counts "
                    f"{', '.join(CITATION_WEIGHTS)}"] if unknown else []
        problems += [f"{kind}: {weight:g} is no weight; give a number 0 or more (0 leaves {kind} out)"
                     for kind, weight in value.items()
                     if kind in CITATION_WEIGHTS and not (math.isfinite(weight) and weight >= 0)]
        if problems:
            raise ValueError("; ".join(problems))
        # a partial mapping changes only the kinds it names: the others keep their default weight
        return {**CITATION_WEIGHTS, **value}

    @field_validator("primary_rule")
    @classmethod
    def _rule_has_its_criteria(cls, value: str, info: ValidationInfo) -> str:
        # A criterion nobody fills is skipped, and every group would end "all criteria equal; tie
        # broken by the lowest id". A caller of find_duplicates that gives it in record_info says so
        # with context={"criteria": [...]}.
        given = PIPELINE_CRITERIA | set((info.context or {}).get("criteria", ()))
        missing = [col for col, _, _ in RULES[value] if col not in given]
        if missing:
            usable = [r for r, crit in RULES.items() if all(col in PIPELINE_CRITERIA for col, _, _ in crit)]
            raise ValueError(
                f"{value!r} ranks by {', '.join(missing)}, which no settings key and no part of the "
                f"dedup pipeline gives (every group would be a tie broken by the lowest id); use one of "
                f"{', '.join(usable)}; only a Python caller of scoring.find.find_duplicates whose record_info "
                f"holds {', '.join(missing)} can use it, validating the settings with "
                f"context={{'criteria': {missing!r}}}")
        return value

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
