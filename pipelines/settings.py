"""The pipeline's settings: matching and scoring, merging, and how flows run. One YAML file:

```yaml
match:    {...}   # scoring.settings.MatchSettings
merge:    {...}   # merge_rules.settings.MergeSettings
pipeline: {...}   # PipelineSettings below
```
Every section is optional; what a file does not name keeps its default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from merge_rules.settings import MergeSettings
from scoring.settings import MatchSettings, SettingsError, explain_problems

ENTITY_TYPES = ("contact", "company", "lead")


class AutoMergePolicy(BaseModel):
    """Off by default. When on, the dedup flow approves groups itself, by Bitrix24's safe rule:
    only certain groups, with no conflict, where one manager is responsible for every record."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    tiers: list[Literal["certain", "probable"]] = ["certain"]
    require_no_conflicts: bool = True
    require_same_manager: bool = True
    require_no_lost_access: bool = True


class DaskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Run comparisons on Dask through prefect-dask.")
    address: str | None = Field(None, description="An existing scheduler, e.g. tcp://10.0.0.5:8786; else a local cluster.")
    workers: int = Field(2, ge=1, description="Workers of the local cluster.")
    chunk_pairs: int = Field(250_000, ge=1000, description="Candidate pairs per Dask task.")


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runs_dir: str = Field("data/runs", description="Where run folders are written.")
    entity_types: list[Literal["contact", "company", "lead"]] = list(ENTITY_TYPES)
    match_leads_to_clients: bool = Field(True, description="Report leads that duplicate an existing contact or company.")
    auto_merge: AutoMergePolicy = AutoMergePolicy()
    dask: DaskSettings = DaskSettings()
    portal_timezone: str | None = Field(
        None, description="The CRM portal's time zone, an IANA name such as Europe/Moscow: `import` and `check` read a "
                          "created_at/modified_at written without a UTC offset (as Bitrix24 exports them) as its local "
                          "time, and `export` writes times in it; none: such times are read and written as UTC.")

    @field_validator("portal_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from crm.csv_io import portal_zone  # (the CSV reader's own check; imported only when a zone is set)

        portal_zone(value)  # ValueError: shown as "pipeline.portal_timezone: 'X' is not a time zone..."
        return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: MatchSettings = MatchSettings()
    merge: MergeSettings = Field(default_factory=MergeSettings)
    pipeline: PipelineSettings = PipelineSettings()

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Settings":
        if path is None:
            return cls()
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"Cannot read settings from {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{path} must hold a mapping with match, merge and pipeline sections.")
        unknown = set(data) - {"match", "merge", "pipeline"}
        if unknown:
            raise SettingsError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; "
                                "use match, merge and pipeline.")
        # every section checked, and each problem named by its section (merge.conflict_policy)
        sections, problems = {}, []
        for name, model in (("match", MatchSettings), ("merge", MergeSettings), ("pipeline", PipelineSettings)):
            try:
                sections[name] = model.model_validate(data[name]) if name in data else model()
            except ValidationError as exc:
                problems += [(name, err) for err in exc.errors()]
        if problems:
            raise SettingsError(explain_problems(problems, str(path)))
        return cls(**sections)

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False))
