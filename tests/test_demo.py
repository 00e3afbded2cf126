"""The demo CRM: deterministic, complete, realistic, with known duplicates, noise and hard negatives."""

from __future__ import annotations

import random
import re
from collections import Counter
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm import schema
from crm.demo import (
    COMM_NOISE,
    COMPANY_NOISE,
    END,
    PERSON_NOISE,
    TRANSLIT_SYSTEMS,
    DemoSizes,
    Phone,
    _comm_facts,
    _comm_lists,
    _make_people,
    _people_applicability,
    _render_phones,
    _rngs,
    build_demo_frames,
    generate_contacts_frames,
    generate_demo,
    inn_is_valid,
    read_truth,
    to_cyrillic,
    translit,
)
from crm.store import Store

SMALL = DemoSizes(contacts=300, companies=100, leads=100, managers=3)
HARD_NEGATIVES = ("family", "father_son", "namesake", "colleague_switchboard", "colleague_info_email")
JUNK = ("placeholder_phone", "placeholder_email", "invalid_email", "empty_name")
CLUSTER = re.compile(r"^(contact|company|lead):[1-9]\d*$")


@pytest.fixture(scope="module")
def demo() -> dict[str, pd.DataFrame]:
    """The demo at its default sizes, without a database (about two seconds)."""
    return build_demo_frames(DemoSizes(), seed=42)


@pytest.fixture(scope="module")
def contacts10k():
    return generate_contacts_frames(10_000, seed=7)


def _rows(store: Store, table: sa.Table) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()]


def _tags(notes: pd.Series) -> Counter:
    return Counter(tag for note in notes for tag in note.split("+"))


def _phone_key(value: str) -> str | None:
    """Digits of a phone without extension and trunk prefix, enough to see two rows name one number."""
    value = re.split(r"доб|ext|д\.|#|x", value)[0]
    digits = re.sub(r"\D", "", value)
    if digits.startswith("810"):
        digits = digits[3:]
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    if len(digits) == 10:
        digits = "7" + digits
    return digits if len(digits) >= 11 and set(digits[1:]) != {"0"} else None


# --- the database ----------------------------------------------------------------------------


def test_same_seed_gives_identical_databases_and_another_seed_differs(store, tmp_path):
    counts = generate_demo(store, SMALL, seed=11)
    twin = Store(f"sqlite:///{tmp_path}/twin.db")
    twin.migrate()
    generate_demo(twin, SMALL, seed=11)
    other = Store(f"sqlite:///{tmp_path}/other.db")
    other.migrate()
    generate_demo(other, SMALL, seed=12)
    for table in schema.CRM_TABLES:
        rows = _rows(store, table)
        assert len(rows) == counts[table.name] > 0, table.name
        assert rows == _rows(twin, table), f"{table.name} differs for the same seed"
    assert _rows(store, schema.contacts) != _rows(other, schema.contacts)
    assert _rows(store, schema.communications) != _rows(other, schema.communications)
    twin.dispose()
    other.dispose()


def test_truth_covers_every_record_and_reads_back(store):
    generate_demo(store, SMALL, seed=3)
    truth = {t: read_truth(store, t) for t in schema.ENTITY_TABLES}
    for entity_type, table in schema.ENTITY_TABLES.items():
        ids = [r[0] for r in _rows(store, table)]
        assert list(truth[entity_type].index) == ids
        assert truth[entity_type].map(lambda c: bool(CLUSTER.match(c))).all()
        # a cluster is named after its original, which is in that cluster itself
        for cluster in set(truth[entity_type]):
            kind, _, number = cluster.partition(":")
            assert truth[kind].loc[int(number)] == cluster
    with pytest.raises(ValueError, match="Unknown entity type 'deal'"):
        read_truth(store, "deal")


def test_links_point_at_existing_records_originals_and_duplicates(store):
    generate_demo(store, SMALL, seed=5)
    ids = {t: {r[0] for r in _rows(store, table)} for t, table in schema.ENTITY_TABLES.items()}
    truth = {t: read_truth(store, t) for t in ids}
    duplicates = {t: {i for i, c in truth[t].items() if c != f"{t}:{i}"} for t in ids}
    for table in (schema.communications, schema.activities, schema.history):
        rows = store.read_frame(sa.select(table.c.entity_type, table.c.entity_id))
        for entity_type, group in rows.groupby("entity_type"):
            assert set(group["entity_id"]) <= ids[entity_type], table.name
        if table is not schema.communications:  # the merge has to re-link these
            assert any(set(g["entity_id"]) & duplicates[t] for t, g in rows.groupby("entity_type")), table.name
    deals = store.read_frame(sa.select(schema.deals))
    assert set(deals["contact_id"].dropna().astype(int)) <= ids["contact"]
    assert set(deals["company_id"].dropna().astype(int)) <= ids["company"]
    assert set(deals["contact_id"].dropna().astype(int)) & duplicates["contact"]
    deal_ids = set(deals["id"])
    for table in (schema.invoices, schema.quotes):
        docs = store.read_frame(sa.select(table))
        assert len(docs) and set(docs["deal_id"]) <= deal_ids
        assert all(isinstance(a, Decimal) and a.as_tuple().exponent == -2 for a in docs["amount"])
    links = store.read_frame(sa.select(schema.contact_companies))
    assert set(links["contact_id"]) <= ids["contact"] and set(links["company_id"]) <= ids["company"]


def test_sequences_continue_after_the_demo_and_a_second_run_is_refused(store):
    counts = generate_demo(store, SMALL, seed=1)
    with store.engine.begin() as conn:
        new_id = conn.execute(schema.contacts.insert().values(
            last_name="Новый", created_at=END.item(), modified_at=END.item())).inserted_primary_key[0]
    assert new_id == counts["contacts"] + 1
    with pytest.raises(ValueError, match="already has rows in users"):
        generate_demo(store, SMALL, seed=1)


@pytest.mark.parametrize("sizes", [DemoSizes(0, 0, 0, 1), DemoSizes(1, 1, 1, 1), DemoSizes(40, 0, 10, 2)])
def test_tiny_and_empty_sizes(store, sizes):
    counts = generate_demo(store, sizes, seed=2)
    assert counts["contacts"] == sizes.contacts and counts["companies"] == sizes.companies
    assert counts["leads"] == sizes.leads and counts["users"] == sizes.managers + 1
    assert counts["demo_truth"] == sizes.contacts + sizes.companies + sizes.leads


# --- the content -----------------------------------------------------------------------------


def test_frames_have_the_table_columns_and_are_deterministic(demo):
    tables = {t.name: t for t in schema.CRM_TABLES}
    assert set(demo) == set(tables)
    for name, frame in demo.items():
        assert list(frame.columns) == [c.name for c in tables[name].columns], name
        assert len(frame), name
    again = build_demo_frames(SMALL, seed=9)
    once_more = build_demo_frames(SMALL, seed=9)
    for name in again:
        pd.testing.assert_frame_equal(again[name], once_more[name])


def test_duplicate_share_and_cluster_sizes(demo, contacts10k):
    truth = demo["demo_truth"]
    for entity_type in ("contact", "company"):
        t = truth[truth["entity_type"] == entity_type]
        assert 1 - t["cluster"].nunique() / len(t) == pytest.approx(0.15, abs=0.001)
        sizes = t["cluster"].value_counts()
        assert sizes.max() <= 4 and (sizes == 2).sum() > (sizes >= 3).sum() > 0
    leads = truth[truth["entity_type"] == "lead"]
    repeated = ~leads["note"].str.startswith("original")
    assert 0.12 <= repeated.mean() <= 0.20
    assert leads["cluster"].str.startswith("contact:").any() and leads["cluster"].str.startswith("company:").any()
    _c, _m, t = contacts10k
    assert 1 - t["cluster"].nunique() / len(t) == pytest.approx(0.15, abs=0.001)
    _c, _m, t = generate_contacts_frames(2_000, seed=1, duplicate_share=0.3)
    assert 1 - t["cluster"].nunique() / len(t) == pytest.approx(0.3, abs=0.001)


def test_every_noise_kind_and_junk_appears_in_contacts(contacts10k):
    _c, _m, truth = contacts10k
    tags = _tags(truth["note"])
    for kind in list(PERSON_NOISE) + list(COMM_NOISE) + list(HARD_NEGATIVES) + list(JUNK):
        assert tags[kind] > 0, kind
    dup_notes = truth.loc[~truth["note"].str.startswith("original"), "note"]
    assert dup_notes.str.split("+").map(len).between(1, 3).all()


def test_every_noise_kind_appears_in_companies_and_leads(demo):
    truth = demo["demo_truth"]
    company_tags = _tags(truth.loc[truth["entity_type"] == "company", "note"])
    for kind in list(COMPANY_NOISE) + ["similar_name", "phone_format", "email_added"]:
        assert company_tags[kind] > 0, kind
    lead_tags = _tags(truth.loc[truth["entity_type"] == "lead", "note"])
    for kind in ("lead_of_contact", "lead_of_company", "translit", "typo", "phone_format", "legal_form_changed"):
        assert lead_tags[kind] > 0, kind


def test_noise_shows_in_the_values(demo):
    contacts, truth = demo["contacts"], demo["demo_truth"].query("entity_type == 'contact'").set_index("entity_id")
    by_id = contacts.set_index("id")
    origin = truth["cluster"].str.split(":").str[1].astype(int)

    def pairs(kind):
        ids = truth.index[truth["note"].str.split("+").map(lambda tags: kind in tags)]
        return [(by_id.loc[origin[i]], by_id.loc[i]) for i in ids]

    translit_pairs = pairs("translit")
    assert any(re.search("[а-я]", o["last_name"] or "") and re.fullmatch(r"[A-Za-z' -]+", d["last_name"] or "")
               for o, d in translit_pairs)
    assert any(o["first_name"] == d["last_name"] and o["last_name"] == d["first_name"] for o, d in pairs("swap_names"))
    assert any(o["middle_name"] and not d["middle_name"] for o, d in pairs("patronymic_dropped"))
    companies = demo["companies"].set_index("id")
    ctruth = demo["demo_truth"].query("entity_type == 'company'").set_index("entity_id")
    translit_titles = [companies.loc[i, "title"] for i in ctruth.index[ctruth["note"].str.contains("title_translit")]]
    assert any(re.search(r"\b(LLC|OOO|JSC)\b", t) for t in translit_titles)


def test_hard_negatives_exist(demo):
    comms, truth = demo["communications"], demo["demo_truth"]
    cluster = truth.set_index(["entity_type", "entity_id"])["cluster"]
    comms = comms.assign(cluster=cluster.loc[list(zip(comms["entity_type"], comms["entity_id"]))].to_numpy())
    contact = comms[comms["entity_type"] == "contact"]
    phones = contact[contact["type"] == "phone"].assign(key=lambda f: f["value"].map(_phone_key)).dropna(subset=["key"])
    shared = phones.groupby("key")["cluster"].nunique()
    assert (shared > 1).sum() > 50  # switchboards and family phones shared by different people
    emails = contact[(contact["type"] == "email") & contact["value"].str.contains("@")]
    emails = emails[~emails["value"].str.lower().isin(["test@test.ru", "noemail@mail.ru", "no@no.ru", "a@a.ru",
                                                        "email@example.com", "noreply@test.com"])]
    shared = emails.assign(key=emails["value"].str.lower()).groupby("key")["cluster"].nunique()
    assert (shared > 1).sum() > 10  # info@ of a company, a family mailbox
    # a contact and the company it works for give the same office number
    company_keys = set(comms[(comms["entity_type"] == "company") & (comms["type"] == "phone")]["value"].map(_phone_key))
    assert len(set(phones["key"]) & company_keys) > 50
    # namesakes: same full name, different people
    contacts = demo["contacts"].merge(truth[truth["entity_type"] == "contact"], left_on="id", right_on="entity_id")
    named = contacts.dropna(subset=["last_name", "first_name"])
    per_name = named.groupby(["last_name", "first_name", named["middle_name"].fillna("")])["cluster"].nunique()
    assert (per_name > 1).sum() > 5
    # a father and son: same first and last name, different patronymic and birthdate
    fs = contacts[contacts["note"].str.contains("father_son")]
    assert len(fs) >= 2 and fs.groupby(["last_name", "first_name"])["middle_name"].nunique().max() == 2
    # companies with similar names and different INNs
    companies = demo["companies"].merge(truth[truth["entity_type"] == "company"], left_on="id", right_on="entity_id")
    similar = companies[companies["note"].str.contains("similar_name")]
    assert similar["cluster"].nunique() > 20 and similar["tax_id"].dropna().is_unique


def test_realistic_mix(demo):
    contacts = demo["contacts"]
    truth = demo["demo_truth"].query("entity_type == 'contact'").set_index("entity_id")
    originals = contacts[truth.loc[contacts["id"], "note"].str.startswith("original").to_numpy()]
    cyrillic = originals["last_name"].fillna("").str.contains("[а-яё]", case=False)
    assert 0.70 <= cyrillic.mean() <= 0.80
    russian = originals[cyrillic]
    assert 0.75 <= russian["middle_name"].notna().mean() <= 0.9  # most Russians with a patronymic
    assert 0.3 <= contacts["birthdate"].notna().mean() <= 0.5
    assert contacts["tax_id"].dropna().map(lambda x: len(x) == 12 and inn_is_valid(x)).all()
    companies = demo["companies"]
    inn = companies["tax_id"].dropna()
    assert len(inn) > 0.6 * len(companies) and inn.map(inn_is_valid).all()
    assert companies["title"].str.contains("ООО").mean() > 0.3
    assert companies["title"].str.contains(r"\b(?:Inc\.|LLC|Ltd)", regex=True).any()
    for frame in (contacts, companies, demo["leads"]):
        assert (frame["created_at"] <= frame["modified_at"]).all() and (frame["modified_at"] <= END).all()
        assert frame["responsible_id"].between(2, 7).all()
        assert frame["source"].notna().all()
    comms = demo["communications"]
    per_contact = comms[(comms["entity_type"] == "contact") & (comms["type"] == "phone")].groupby("entity_id").size()
    assert per_contact.median() in (1, 2) and per_contact.max() <= 5
    users = demo["users"]
    assert list(users["role"]) == ["admin"] + ["manager"] * 6 and users["email"].is_unique
    assert set(demo["deals"]["currency"]) == {"RUB", "USD", "EUR"}
    # duplicates are mostly typed in after the record they copy
    origin = truth["cluster"].str.split(":").str[1].astype(int)
    created = contacts.set_index("id")["created_at"]
    dups = origin[origin != origin.index]
    later = (created.loc[dups.index].to_numpy() > created.loc[dups.to_numpy()].to_numpy()).mean()
    assert 0.75 <= later < 1.0


def test_generate_contacts_frames_shape_and_bad_input(contacts10k):
    contacts, comms, truth = contacts10k
    assert list(contacts.columns) == [c.name for c in schema.contacts.columns]
    assert list(contacts["id"]) == list(range(1, 10_001)) and list(truth["entity_id"]) == list(range(1, 10_001))
    assert list(comms.columns) == ["entity_id", "type", "kind", "value"] and list(truth.columns) == [
        "entity_id", "cluster", "note"]
    assert comms["entity_id"].is_monotonic_increasing and set(comms["type"]) == {"phone", "email"}
    assert set(comms["kind"]) <= set(schema.COMM_KINDS)
    empty = generate_contacts_frames(0)
    assert all(len(f) == 0 for f in empty)
    with pytest.raises(ValueError, match="contacts=-1"):
        generate_contacts_frames(-1)
    with pytest.raises(ValueError, match="duplicate_share=0.9"):
        generate_contacts_frames(10, duplicate_share=0.9)
    with pytest.raises(ValueError, match="managers"):
        build_demo_frames(DemoSizes(managers=0))
    with pytest.raises(ValueError, match="seed=-1"):
        generate_contacts_frames(10, seed=-1)


# --- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, system, expected", [
    ("Иванов", "icao", "Ivanov"), ("Иванов", "informal", "Ivanoff"), ("Иванов", "german", "Iwanow"),
    ("Юрий", "icao", "Iurii"), ("Юрий", "bgn", "Yuriy"), ("Юрий", "informal", "Yury"),
    ("Щербаков", "icao", "Shcherbakov"), ("Щербаков", "german", "Schtscherbakow"),
    ("Александр", "informal", "Alexandr"), ("Евгений", "bgn", "Yevgeniy"), ("ИВАНОВ", "icao", "IVANOV"),
    ("Хабибуллин", "gost", "Xabibullin"), ("Анна-Мария", "icao", "Anna-Mariia"),
])
def test_translit(text, system, expected):
    assert translit(text, system) == expected


def test_translit_systems_all_give_latin():
    for system in TRANSLIT_SYSTEMS:
        assert re.fullmatch(r"[A-Za-z ]+", translit("Щукин Фёдор Юрьевич", system)), system


@pytest.mark.parametrize("text, expected", [("Smith", "Смит"), ("John Smith", "Джон Смит"), ("Bill", "Билл"),
                                             ("Acme Inc.", "Акме Инк."), ("Romashka", "Ромашка")])
def test_to_cyrillic(text, expected):
    assert to_cyrillic(text) == expected


@pytest.mark.parametrize("phone, expected", [
    (Phone(7, "4951234567", 3, 0), "+7 (495) 123-45-67"), (Phone(7, "4951234567", 3, 2), "8 495 1234567"),
    (Phone(7, "4951234567", 3, 3), "84951234567"), (Phone(7, "4951234567", 3, 4), "+74951234567"),
    (Phone(7, "4951234567", 3, 5), "7-495-123-45-67"), (Phone(7, "3812123456", 4, 0), "+7 (3812) 12-34-56"),
    (Phone(7, "4951234567", 3, 0, "12", 0), "+7 (495) 123-45-67 доб. 12"),
    (Phone(7, "4951234567", 3, 0, "12", 5), "+7 (495) 123-45-67 ext. 12"),
    (Phone(1, "2125551234", 3, 0), "+1 (212) 555-1234"), (Phone(44, "2079460123", 2, 1), "+44 (0)20 7946 0123"),
    (Phone(44, "7700900123", 4, 2), "07700 900 123"),
])
def test_phone_formats(phone, expected):
    assert phone.render() == expected


def test_vectorised_phone_rendering_matches_one_by_one():
    r = random.Random(4)
    phones = []
    for _ in range(500):
        cc = r.choice([7, 1, 44])
        if cc == 7:
            alen = r.choice([3, 4, 5])
            nsn = str(r.randrange(2 * 10**9, 10**10))
        else:
            alen = r.choice([2, 3, 4]) if cc == 44 else 3
            nsn = str(r.randrange(2 * 10**9, 10**10))
        ext = str(r.randrange(10, 999)) if r.random() < 0.2 else None
        phones.append(Phone(cc, nsn, alen, r.randrange(7), ext, r.randrange(7)))
    arrays = [np.array([getattr(p, k) for p in phones], dtype=object if k == "ext" else None)
              for k in ("cc", "nsn", "alen", "style", "ext", "ext_style")]
    assert list(_render_phones(*arrays)) == [p.render() for p in phones]


def test_inn_check_digits():
    assert inn_is_valid("7707083893") and not inn_is_valid("7707083894")  # Sberbank's INN, and one digit off
    assert inn_is_valid("500100732259") and not inn_is_valid("500100732258")
    assert not inn_is_valid("12345") and not inn_is_valid("") and not inn_is_valid("77070838a3")


def test_vectorised_applicability_matches_the_noise_predicates():
    rng, r = _rngs(5, 99)
    people = _make_people(1_500, 0.15, rng, r, 6, None)
    f = people.frame
    cols = {"last": f["last_name"].to_numpy(), "first": f["first_name"].to_numpy(),
            "middle": f["middle_name"].to_numpy(), "post": f["post"].to_numpy(), "address": f["address"].to_numpy(),
            "tax_id": f["tax_id"].to_numpy(), "comments": f["comments"].to_numpy(), "ru": people.ru,
            "birthdate": pd.to_datetime(f["birthdate"]).to_numpy().astype("datetime64[D]")}
    comms = people.comms
    app = _people_applicability(cols, comms["entity_id"].to_numpy() - 1, comms["type"].to_numpy(),
                                comms["value"].to_numpy(), people.comm_phone["cc"], len(f))
    lists = _comm_lists(comms, people.comm_phone, len(f))
    registry = {**PERSON_NOISE, **COMM_NOISE}
    for i in range(len(f)):
        rec = {"last": cols["last"][i], "first": cols["first"][i], "middle": cols["middle"][i],
               "ru": bool(people.ru[i]), "male": bool(people.male[i]), "post": cols["post"][i],
               "address": cols["address"][i], "tax_id": cols["tax_id"][i], "comments": cols["comments"][i],
               "birthdate": f["birthdate"].iat[i]}
        facts = _comm_facts(lists[i])
        expected = [applies(rec, facts) for _w, applies, _fn in registry.values()]
        assert list(app[i]) == expected, (i, rec)
