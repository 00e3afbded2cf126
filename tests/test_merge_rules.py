"""Golden tests of the merge rules (Russian and English values), the settings and the JSON codec."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import yaml
from hypothesis import given, settings as hsettings, strategies as st

from merge_rules.codec import decode, encode, fingerprint
from merge_rules.normalise import comm_key, comm_keys, inn_valid
from merge_rules.rules import RULES, Candidate, RuleContext, RuleError, unite
from merge_rules.settings import MergeSettings, SettingsError, field_kinds

D = dt.datetime


def cands(*values, created=None, modified=None):
    """Candidates #1 (the primary), #2, #3 ... with optional created/modified datetimes."""
    out = []
    for i, v in enumerate(values):
        out.append(Candidate(i + 1, v, i == 0, (created or [None] * len(values))[i],
                             (modified or [None] * len(values))[i]))
    return out


def run(rule, candidates, field="post", entity="contact"):
    return RULES[rule].func(candidates, RuleContext(entity, field))


# (description, rule, field, candidates, expected value, expected source, expected conflict)
CASES = [
    ("keep primary: the primary's filled value wins", "keep_primary", "post",
     cands("Директор", "CEO"), "Директор", 1, False),
    ("keep primary: even when it is empty", "keep_primary", "post", cands(None, "CEO"), None, 1, False),
    ("fill empty: the primary's empty field filled from a duplicate", "fill_empty", "birthdate",
     cands(None, dt.date(1980, 5, 17)), dt.date(1980, 5, 17), 2, False),
    ("fill empty: spelling variants of one value are no conflict, primary's spelling kept", "fill_empty",
     "last_name", cands("Иванов", " иванов ", "ИВАНОВ"), "Иванов", 1, False),
    ("fill empty: ё and е are one letter", "fill_empty", "first_name", cands("Пётр", "Петр"), "Пётр", 1, False),
    ("fill empty: two different filled values are a conflict", "fill_empty", "post",
     cands("Директор", "Генеральный директор"), "Директор", 1, True),
    ("fill empty: blank strings count as empty", "fill_empty", "post", cands("  ", "Manager"), "Manager", 2, False),
    ("fill empty: primary empty, duplicates differ: conflict", "fill_empty", "post",
     cands(None, "CTO", "CEO"), "CTO", 2, True),
    ("most recent: the most recently modified record's value", "most_recent", "address",
     cands("Москва", "Санкт-Петербург", modified=[D(2023, 1, 1), D(2024, 6, 1)]), "Санкт-Петербург", 2, False),
    ("most recent: ignores records without a value", "most_recent", "address",
     cands("1 Main St", None, modified=[D(2023, 1, 1), D(2024, 6, 1)]), "1 Main St", 1, False),
    ("most recent: a tie between different values is a conflict", "most_recent", "address",
     cands("A", "B", modified=[D(2024, 1, 1), D(2024, 1, 1)]), "A", 1, True),
    ("oldest: the earliest created record's value", "oldest", "source",
     cands("web", "phone", created=[D(2023, 1, 1), D(2019, 5, 5)]), "phone", 2, False),
    ("longest: the longest text", "longest", "title",
     cands("ООО Ромашка", "Общество с ограниченной ответственностью «Ромашка»"),
     "Общество с ограниченной ответственностью «Ромашка»", 2, False),
    ("longest: equal length, different text: conflict", "longest", "title", cands("Acme", "Ajax"), "Acme", 1, True),
    ("most common: the value most records share, first spelling kept", "most_common", "address",
     cands("Санкт-Петербург", "Москва", "москва "), "Москва", 2, False),
    ("most common: a tie is a conflict", "most_common", "industry", cands("IT", "Retail"), "IT", 1, True),
    ("max: the latest date", "max", "birthdate", cands(dt.date(1980, 1, 1), dt.date(1981, 2, 2), None),
     dt.date(1981, 2, 2), 2, False),
    ("min: the earliest datetime", "min", "created_at", cands(D(2023, 1, 1), D(2022, 11, 5, 8, 30)),
     D(2022, 11, 5, 8, 30), 2, False),
    ("max: numbers", "max", "amount", cands(Decimal("10.00"), Decimal("250000.50")), Decimal("250000.50"), 2, False),
    ("min: numbers", "min", "amount", cands(5, 3, None), 3, 2, False),
    ("sum: Decimals stay exact", "sum", "amount", cands(Decimal("10.50"), Decimal("2.25"), None),
     Decimal("12.75"), None, False),
    ("sum: one value is that value, from its record", "sum", "amount", cands(None, 7), 7, 2, False),
    ("prefer valid: a valid INN over an invalid one", "prefer_valid", "tax_id",
     cands("7707083894", "7707083893"), "7707083893", 2, False),
    ("prefer valid: a valid phone over an invalid one", "prefer_valid", "phone",
     cands("12-34", "+7 (916) 123-45-67"), "+7 (916) 123-45-67", 2, False),
    ("prefer valid: a valid email over an invalid one", "prefer_valid", "email",
     cands("john@", "John@Acme.com"), "John@Acme.com", 2, False),
    ("prefer valid: one website written two ways is no conflict", "prefer_valid", "website",
     cands("romashka.ru", "https://www.romashka.ru/"), "romashka.ru", 1, False),
    ("prefer valid: two different valid INNs conflict", "prefer_valid", "tax_id",
     cands("7707083893", "7736207543"), "7707083893", 1, True),
    ("prefer valid: nothing valid falls back to fill_empty", "prefer_valid", "tax_id",
     cands(None, "123"), "123", 2, False),
]


@pytest.mark.parametrize("desc, rule, field, candidates, value, source, conflict", CASES, ids=[c[0] for c in CASES])
def test_rule(desc, rule, field, candidates, value, source, conflict):
    out = run(rule, candidates, field)
    assert (out.value, out.source_id, out.conflict) == (value, source, conflict), desc


def test_concat_comments_with_dated_separator_skips_repeats():
    c = cands("Звонить после 15:00", "Просил КП до пятницы", "звонить  после 15:00", None,
              modified=[D(2024, 3, 1), D(2024, 4, 15, 16, 45), D(2023, 6, 1), D(2024, 1, 1)])
    out = run("concat", c, "comments")
    assert out.value == "Звонить после 15:00\n\n--- from contact #2 (2024-04-15) ---\nПросил КП до пятницы"
    assert out.source_id is None and not out.conflict


def test_concat_single_text_is_kept_as_is():
    out = run("concat", cands(None, "Met at the expo", modified=[None, D(2023, 1, 1)]), "comments")
    assert (out.value, out.source_id) == ("Met at the expo", 2)


def test_concat_without_primary_text_dates_every_part():
    c = cands(None, "Note A", "Note B", modified=[None, D(2023, 1, 1), D(2024, 2, 2)])
    out = run("concat", c, "comments", entity="company")
    assert out.value == ("--- from company #2 (2023-01-01) ---\nNote A\n\n"
                         "--- from company #3 (2024-02-02) ---\nNote B")


def test_union_of_phones_compares_normalised_and_keeps_raw():
    c = [Candidate(1, ["+7 (916) 123-45-67", "+7 495 111-22-33"], True),
         Candidate(2, ["8 916 123 45 67", "+7 495 765-43-21 доб. 12"]),
         Candidate(3, ["89161234567", "+74957654321"])]
    out = run("union", c, "phone")
    # (the switchboard's number and an extension behind it are two: a merge kept one and lost the other)
    assert out.value == ["+7 (916) 123-45-67", "+7 495 111-22-33", "+7 495 765-43-21 доб. 12", "+74957654321"]


def test_union_of_emails_ignores_case_and_spaces():
    c = [Candidate(1, ["ivanov@mail.ru"], True), Candidate(2, [" IVANOV@Mail.ru", "i.ivanov@yandex.ru"])]
    assert run("union", c, "email").value == ["ivanov@mail.ru", "i.ivanov@yandex.ru"]


def test_unite_reports_what_each_repeat_repeats():
    u = unite([("a", "phone", "+7 916 123-45-67"), ("b", "web", "https://www.acme.com/"),
               ("c", "phone", "8(916)1234567"), ("d", "web", "acme.com")])
    assert [item for item, _key in u.kept] == ["a", "b"]
    assert u.repeats == [("c", "a"), ("d", "b")]


# A field each rule can work on, and values of its kind (rules flagged unanimous are tried on them)
_UNANIMOUS_FIELDS = {"keep_primary": ("post", st.text(max_size=8)), "fill_empty": ("post", st.text(max_size=8)),
                     "longest": ("post", st.text(max_size=8)), "most_common": ("post", st.text(max_size=8)),
                     "concat": ("comments", st.text(max_size=8)), "prefer_valid": ("tax_id", st.sampled_from(
                         ["500100732259", "7707083893", "123", "", " "])),
                     "max": ("birthdate", st.dates()), "min": ("created_at", st.datetimes())}


def test_every_unanimous_rule_is_tried_below():
    assert {name for name, r in RULES.items() if r.unanimous} == set(_UNANIMOUS_FIELDS)


@hsettings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_UNANIMOUS_FIELDS)).flatmap(lambda name: st.tuples(
    st.just(name), st.one_of(st.none(), _UNANIMOUS_FIELDS[name][1]), st.integers(1, 4),
    st.lists(st.one_of(st.none(), st.datetimes()), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.datetimes()), min_size=4, max_size=4))))
def test_a_unanimous_rule_gives_the_primarys_one_value(case):
    # the planner relies on it to skip the rule where every record holds the same value
    name, value, n, created, modified = case
    out = run(name, cands(*[value] * n, created=created, modified=modified), _UNANIMOUS_FIELDS[name][0])
    assert (out.value, out.source_id, out.conflict, out.note) == (value, 1, False, "")


@pytest.mark.parametrize("rule, candidates, source", [
    ("most_recent", cands("CEO", "CEO", modified=[D(2020, 1, 1), D(2024, 1, 1)]), 2),
    ("oldest", cands("CEO", "CEO", created=[D(2024, 1, 1), D(2020, 1, 1)]), 2),
    ("sum", cands(2, 2), None)])
def test_rules_not_unanimous_may_take_one_value_from_a_duplicate(rule, candidates, source):
    assert not RULES[rule].unanimous
    assert run(rule, candidates, "post").source_id == source


def test_sum_refuses_text_naming_the_field():
    with pytest.raises(RuleError, match=r"contact\.post: 'sum' needs numbers, got #2='CEO'"):
        run("sum", cands(1, "CEO"), "post")


def test_max_refuses_mixed_types():
    with pytest.raises(RuleError, match="cannot compare"):
        run("max", cands(dt.date(2020, 1, 1), "вчера"), "birthdate")


def test_prefer_valid_needs_a_validity_check():
    with pytest.raises(RuleError, match="no validity check"):
        run("prefer_valid", cands("a", "b"), "post")


def test_bulk_comm_keys_equal_one_at_a_time():
    values = [("phone", "+7 (916) 123-45-67"), ("phone", "8 916 123 45 67"), ("phone", "+7 495 765-43-21 доб. 12"),
              ("phone", "12345"), ("phone", ""), ("phone", "000-00-00"), ("phone", "(617) 755-8484"),
              ("phone", "+44 20 7946 0958"), ("phone", "не знаю"), ("email", " Ivan@Mail.RU "),
              ("email", "ivan.petrov+crm@gmail.com"), ("email", "not an email"), ("email", "иван@почта.рф"),
              ("email", "noemail@example.com"), ("email", ""), ("web", "HTTP://www.Acme.com/"), ("im", "@Ivan_P"),
              ("phone", "8 916 123 45 67")]
    types, raws = [t for t, _ in values], [v for _, v in values]
    assert comm_keys(types, raws) == [comm_key(t, v) for t, v in values]
    assert comm_keys([], []) == []


def test_comm_keys():
    assert comm_key("phone", "+7 (916) 123-45-67") == comm_key("phone", "8 916 123 45 67")
    assert comm_key("phone", "+7 495 765-43-21 доб. 12") == comm_key("phone", "8 495 765 4321 ext 12")
    assert comm_key("phone", "+7 495 765-43-21 доб. 12") != comm_key("phone", "+74957654321")
    assert comm_key("phone", "+7 495 765-43-21 доб. 12") != comm_key("phone", "+7 495 765-43-21 доб. 13")
    assert comm_key("phone", "+7 916 123-45-67") != comm_key("phone", "+7 916 123-45-68")
    assert comm_key("email", " Ivan@Mail.RU ") == comm_key("email", "ivan@mail.ru")
    assert comm_key("web", "HTTP://www.Acme.com/") == comm_key("web", "acme.com")
    assert comm_key("phone", "12345") != comm_key("email", "12345")


# (dashes: the same number, as the matching reads it)
@pytest.mark.parametrize("inn, ok", [("7707083893", True), ("7707083894", False), ("500100732259", True),
                                     ("500100732258", False), ("123", False), ("77070838931", False),
                                     ("77-07083893", True), (None, False)])
def test_inn_check_digits(inn, ok):
    assert inn_valid(inn) is ok


# -- settings -------------------------------------------------------------------------------------

def test_defaults_name_a_rule_for_every_field():
    s = MergeSettings.load()
    for entity in ("contact", "company", "lead"):
        assert set(s.fields[entity]) == set(field_kinds(entity)), entity
    assert s.fields["contact"]["comments"] == "concat"
    assert s.fields["contact"]["phone"] == "union"
    assert s.fields["company"]["tax_id"] == "prefer_valid"
    assert (s.conflict_policy, s.delete_mode) == ("ask", "soft")
    assert MergeSettings() == s


def test_a_settings_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"conflict_policy": "most_recent", "delete_mode": "hard",
                                    "fields": {"contact": {"post": "longest", "email": "keep_primary"}}}))
    s = MergeSettings.load(path)
    assert (s.conflict_policy, s.delete_mode) == ("most_recent", "hard")
    assert s.fields["contact"]["post"] == "longest"
    assert s.fields["contact"]["email"] == "keep_primary"
    assert s.fields["contact"]["comments"] == "concat"  # default kept
    assert s.fields["company"] == MergeSettings().fields["company"]
    s.save(tmp_path / "again.yaml")
    assert MergeSettings.load(tmp_path / "again.yaml") == s


def test_every_settings_problem_in_one_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "conflict_policy": "coin_flip",
        "fields": {"contact": {"postt": "longest", "comments": "sum", "last_name": "longst", "phone": "longest",
                               "post": "prefer_valid"},
                   "contacts": {"post": "longest"}}}))
    with pytest.raises(SettingsError) as err:
        MergeSettings.load(path)
    msg = str(err.value)
    for expected in [
        "conflict_policy: Input should be 'ask', 'keep_primary', 'most_common', 'most_recent' or 'longest'",
        "fields.contact.postt: contact has no field 'postt' (did you mean 'post'?)",
        "fields.contact.comments: rule 'sum' does not work on a text field; use one of concat,",
        "fields.contact.last_name: unknown rule 'longst' (did you mean 'longest'?)",
        "fields.contact.phone: rule 'longest' does not work on a multi field; use one of keep_primary, union",
        "fields.contact.post: 'prefer_valid' has no validity check for 'post'",
        "fields.contacts: unknown entity type (did you mean 'contact'?)",
    ]:
        assert expected in msg, (expected, msg)


def test_settings_file_errors_are_readable(tmp_path):
    with pytest.raises(SettingsError, match="Cannot read the merge settings file"):
        MergeSettings.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fields: [unclosed")
    with pytest.raises(SettingsError, match="is not valid YAML"):
        MergeSettings.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SettingsError, match="must hold a mapping"):
        MergeSettings.load(bad)


# -- codec ----------------------------------------------------------------------------------------

def test_codec_round_trips_dates_datetimes_decimals_through_json():
    row = {"d": dt.date(1980, 5, 17), "t": D(2024, 4, 15, 16, 45, 30, 123456), "n": Decimal("250000.50"),
           "s": "Иванов", "i": 3, "b": True, "none": None, "f": 0.1, "list": [Decimal("1.10"), dt.date(2020, 2, 29)]}
    back = decode(json.loads(json.dumps(encode(row))))
    assert back == row
    assert str(back["n"]) == "250000.50" and type(back["t"]) is D and type(back["d"]) is dt.date


@hsettings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(
    st.none(), st.text(), st.integers(), st.booleans(), st.dates(),
    st.datetimes().map(lambda d: d.replace(fold=0)),  # the database never returns fold=1
    st.decimals(allow_nan=False, allow_infinity=False, places=2))))
def test_codec_round_trip_property(row):
    back = decode(json.loads(json.dumps(encode(row))))
    assert back == row and {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in row.items()}
    assert fingerprint(back) == fingerprint(row)


# -- spellings of one name are no conflict -----------------------------------------------------------

def test_two_spellings_of_one_name_or_title_are_no_conflict_and_the_primarys_stays():
    from merge_rules.rules import Candidate, RuleContext, get_rule

    def settle(entity, field, *values):
        cands = [Candidate(i, v, i == 1) for i, v in enumerate(values, start=1)]
        return get_rule("fill_empty").func(cands, RuleContext(entity, field))

    out = settle("company", "title", "ООО «Ромашка»", "Ромашка, ООО", "OOO Romashka")
    assert (out.value, out.source_id, out.conflict) == ("ООО «Ромашка»", 1, False)
    assert settle("lead", "company_title", "Ромашка", "ООО „Ромашка“").conflict is False
    assert settle("company", "title", "ООО «Ромашка»", "ООО «Лютик»").conflict is True
    out = settle("contact", "last_name", "Иванов", "Ivanov")
    assert (out.value, out.conflict) == ("Иванов", False)
    assert settle("contact", "first_name", "Иван", "Ваня").conflict is True  # a nickname is another value
    assert settle("contact", "last_name", "Ивановв", "Иванов").conflict is True  # and a typo
    assert settle("company", "title", "ООО «Ромашкка»", "Ромашка").conflict is True
    assert settle("contact", "first_name", "Иван", "Пётр").conflict is True
    # a lead's own title is no company name: its words count
    assert settle("lead", "title", "Заявка ООО Ромашка", "Заявка Ромашка").conflict is True


def test_the_oldest_rule_takes_the_earliest_records_source_without_a_conflict():
    """README's advice for `source` (first touch): `oldest`, where the default (Bitrix24's) asks."""
    import datetime as dt

    from merge_rules.rules import Candidate, RuleContext, get_rule

    rule = "oldest"
    cands = [Candidate(1, "web", True, dt.datetime(2024, 5, 1)), Candidate(2, "call", False, dt.datetime(2021, 1, 1)),
             Candidate(3, None, False, dt.datetime(2020, 1, 1))]
    out = get_rule(rule).func(cands, RuleContext("contact", "source"))
    assert (out.value, out.source_id, out.conflict) == ("call", 2, False)


def test_a_tax_id_written_with_its_kpp_is_valid_and_a_branchs_kpp_is_another_value():
    from merge_rules.normalise import inn_valid
    from merge_rules.rules import Candidate, RuleContext, get_rule

    assert inn_valid("7707083893") and inn_valid("7707083893/770701001") and inn_valid("ИНН 7707083893")
    assert not inn_valid("7707083894") and not inn_valid("7707083893 7736207543")

    def settle(*values):
        cands = [Candidate(i, v, i == 1) for i, v in enumerate(values, start=1)]
        return get_rule("prefer_valid").func(cands, RuleContext("company", "tax_id"))

    # the same INN and KPP written two ways: one value, the primary's
    out = settle("7707083893/770701001", "ИНН 7707083893 КПП 770701001")
    assert (out.value, out.conflict) == ("7707083893/770701001", False)
    # a head office and a branch, or two branches: a choice for a person (the KPP is not dropped unseen)
    assert settle("7707083893", "7707083893/770701001").conflict is True
    assert settle("7707083893/770701001", "7707083893/784243001").conflict is True
    # an invalid INN gives way to the valid one
    out = settle("7707083894", "7707083893/770701001")
    assert (out.value, out.source_id, out.conflict) == ("7707083893/770701001", 2, False)
