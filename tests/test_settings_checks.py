"""Settings mistakes that used to be accepted silently: a phone region phonenumbers does not know,
citation weights with unknown kinds or negative values, and a primary rule whose criterion nothing
gives. Each is refused naming the key, the value and the fix; good values still load."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from crm.readers import citation_counts, record_info
from merge_rules.testing import load_sample
from pipelines.cli import app
from pipelines.settings import Settings
from scoring.primary import RULES, rank_groups
from scoring.settings import CITATION_WEIGHTS, MatchSettings, SettingsError


def refusal(data: dict) -> str:
    with pytest.raises(SettingsError) as err:
        MatchSettings.from_dict(data)
    return str(err.value)


def file_refusal(tmp_path, text: str) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        Settings.load(path)
    return str(err.value)


# -- match.region ---------------------------------------------------------------------------

@pytest.mark.parametrize("given, read", [("RU", "RU"), ("KZ", "KZ"), ("BY", "BY"), ("US", "US"), ("DE", "DE"),
                                         ("ru", "RU"), (" kz ", "KZ")])
def test_known_regions_load_in_upper_case(given, read):
    assert MatchSettings.from_dict({"region": given}).region == read


def test_an_unknown_region_is_refused_with_valid_examples(tmp_path):
    msg = file_refusal(tmp_path, "match: {region: XX}\n")
    assert "match.region: unknown phone region 'XX'" in msg
    assert "RU, KZ, BY" in msg and "US, DE" in msg and "(got 'XX')" in msg
    assert "(did you mean 'GB'?)" in refusal({"region": "UK"})  # phonenumbers calls it GB
    assert "use the two-letter one" in refusal({"region": "RUS"})
    assert "unknown phone region ''" in refusal({"region": ""})


# -- match.citation_weights -----------------------------------------------------------------

def test_a_partial_citation_weights_keeps_the_other_defaults():
    weights = MatchSettings.from_dict({"citation_weights": {"deals": 5, "history": 0.5}}).citation_weights
    assert weights == {**CITATION_WEIGHTS, "deals": 5.0, "history": 0.5}
    assert MatchSettings().citation_weights == CITATION_WEIGHTS
    assert MatchSettings.from_dict({"citation_weights": {"tasks": 0}}).citation_weights["tasks"] == 0.0


def test_unknown_kinds_and_negative_weights_are_refused(tmp_path):
    msg = file_refusal(tmp_path, "match:\n  citation_weights: {deal: 2, foo: 1, quotes: -3}\n")
    assert "match.citation_weights: unknown kind of linked record 'deal' (did you mean 'deals'?), 'foo'" in msg
    assert "counts deals, invoices, quotes, activities, tasks, history" in msg
    assert "quotes: -3 is no weight; give a number 0 or more" in msg
    assert "quotes: nan is no weight" in refusal({"citation_weights": {"quotes": float("nan")}})


def test_the_citation_index_uses_the_overlaid_weights(store):
    load_sample(store)
    settings = MatchSettings.from_dict({"citation_weights": {"deals": 10}})
    counts = citation_counts(store, "contact")
    assert counts["deals"].sum() > 0 and counts[["invoices", "activities"]].to_numpy().sum() > 0
    expected = sum(counts[k] * w for k, w in {**CITATION_WEIGHTS, "deals": 10.0}.items())
    got = record_info(store, "contact", settings.citation_weights)["citations"]
    pd.testing.assert_series_equal(got, expected.rename("citations"), check_names=False)
    # before, {deals: 10} replaced the defaults and the index counted deals only
    assert (got != counts["deals"] * 10).any()


# -- match.primary_rule ---------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["bitrix", "oldest", "newest", "most_complete"])
def test_the_rules_the_pipeline_can_rank_by_load(rule):
    assert MatchSettings.from_dict({"primary_rule": rule}).primary_rule == rule


def test_custom_without_its_score_is_refused_at_load(tmp_path):
    msg = file_refusal(tmp_path, "match: {primary_rule: custom}\n")
    assert "match.primary_rule: 'custom' ranks by custom_score" in msg and "(got 'custom')" in msg
    assert "use one of bitrix, oldest, newest, most_complete" in msg
    assert "context={'criteria': ['custom_score']}" in msg


def test_custom_ranks_by_the_score_a_python_caller_gives():
    settings = MatchSettings.model_validate({"primary_rule": "custom"}, context={"criteria": ["custom_score"]})
    assert [col for col, _, _ in RULES[settings.primary_rule]] == ["editable", "custom_score"]
    members = pd.DataFrame({"id": [1, 2, 3], "group": [0, 0, 0], "editable": True, "custom_score": [0.2, 0.9, 0.5]})
    ranked = rank_groups(members, settings.primary_rule, settings.tie_policy).iloc[0]
    assert ranked["primary_id"] == 2 and ranked["ordered_ids"] == [2, 3, 1]
    assert ranked["reason"].startswith("highest custom score (0.9 vs 0.5 for #3)")


# -- all at once, as the operator sees them -----------------------------------------------

def test_the_command_line_names_every_mistake_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("match:\n  region: XX\n  citation_weights: {deals: -3, foo: 1}\n  primary_rule: custom\n",
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--settings", str(bad), "--db", f"sqlite:///{tmp_path}/none.db"])
    out = result.output
    assert result.exit_code == 2 and "Traceback" not in out, out
    assert "has 3 problem(s)" in out
    for phrase in ("match.region: unknown phone region 'XX'", "match.citation_weights: unknown kind of linked "
                   "record 'foo'", "deals: -3 is no weight", "match.primary_rule: 'custom' ranks by custom_score"):
        assert phrase in out, (phrase, out)


def test_saved_settings_load_back_the_same(tmp_path):
    settings = MatchSettings.from_dict({"region": "kz", "citation_weights": {"deals": 4}, "primary_rule": "oldest"})
    settings.save(tmp_path / "s.yaml")
    assert MatchSettings.load(tmp_path / "s.yaml") == settings
