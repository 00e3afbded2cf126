"""`crm-dedup check --entity lead`: a new lead that is an existing contact or company is reported
against that record (as the run's leads-vs-clients step finds it), beside the lead-lead pairs."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from crm import proposals, schema
from crm.csv_io import export_csv
from crm.demo import DemoSizes, generate_demo
from pipelines.check import check_new_records, summary_line

pytestmark = pytest.mark.slow


@pytest.fixture
def crm(store):
    """A CRM large enough for the models trained on it to weigh a company's title and phone (on 40
    companies they come out "possible": probe B item 1)."""
    generate_demo(store, DemoSizes(contacts=300, companies=150, leads=100, managers=2), seed=9)
    return store


def _exported(store, tmp_path, entity: str) -> pd.DataFrame:
    export_csv(store, tmp_path / f"{entity}.csv", entity)
    return pd.read_csv(tmp_path / f"{entity}.csv", dtype=str).set_index("id")


def _first_with(frame: pd.DataFrame, columns: list[str]) -> str:
    """The id of the first record holding every one of these columns."""
    return frame[frame[columns].notna().all(axis=1)].index[0]


def _value(frame: pd.DataFrame, record: str, prefix: str) -> str:
    """The record's first value of a communication column (email:work, phone:mobile...)."""
    return next(v for c, v in frame.loc[record].items() if c.startswith(prefix) and isinstance(v, str))


def _settings(tmp_path, leads_to_clients: bool) -> str:
    path = tmp_path / f"settings_{leads_to_clients}.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"match_leads_to_clients": leads_to_clients,
                                                 "runs_dir": str(tmp_path / "runs")}}))
    return str(path)


def _new_leads(crm, tmp_path):
    """Leads about to be imported: (1) an existing contact (same names and e-mail), (2) an existing
    company (its title and phone), (3) nobody, (4) a copy of an existing lead. Returns the file and
    the contact's, company's and lead's ids."""
    contacts, companies, leads = (_exported(crm, tmp_path, e) for e in ("contact", "company", "lead"))
    emails = [c for c in contacts.columns if c.startswith("email:")]
    contacts = contacts[contacts[emails].notna().any(axis=1)]
    contact = _first_with(contacts, ["last_name", "first_name", "middle_name"])
    phones = [c for c in companies.columns if c.startswith("phone:")]
    company = companies[companies[phones].notna().any(axis=1) & companies["title"].notna()].index[0]
    phones, emails = ([c for c in leads.columns if c.startswith(k)] for k in ("phone:", "email:"))
    leads = leads[leads[phones].notna().any(axis=1) & leads[emails].notna().any(axis=1)]
    lead = _first_with(leads, ["last_name", "first_name"])
    c = contacts.loc[contact]
    rows = [
        {"title": "Заявка с сайта", "last_name": c["last_name"], "first_name": c["first_name"],
         "middle_name": c["middle_name"], "email:work": _value(contacts, contact, "email:")},
        {"title": "Звонок", "company_title": companies.loc[company, "title"],
         "phone:work": _value(companies, company, "phone:")},
        {"title": "Заявка", "last_name": "Чрезвычайнов", "first_name": "Аполлинарий",
         "phone:work": "+7 999 765-43-21", "email:work": "apollinariy.unique@example.org"},
        {**leads.loc[lead, ["title", "last_name", "first_name", "middle_name", "company_title"]].to_dict(),
         "phone:work": _value(leads, lead, "phone:"), "email:work": _value(leads, lead, "email:")},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "new_leads.csv", index=False)
    return tmp_path / "new_leads.csv", contact, company, lead, (contacts, companies)


def test_new_leads_are_checked_against_contacts_and_companies_too(crm, tmp_path):
    csv, contact, company, lead, (contacts, companies) = _new_leads(crm, tmp_path)
    rows, problems = check_new_records(crm.url, "lead", csv=csv, settings_path=_settings(tmp_path, True))
    assert problems == []
    by_new = {k: g for k, g in rows.groupby("new_record")}

    def match(new: str, kind: str, record: str) -> pd.Series:
        hit = by_new[new][(by_new[new]["duplicate_type"] == kind) & (by_new[new]["duplicate_of"] == record)]
        assert len(hit) == 1, rows
        return hit.iloc[0]

    as_contact = match("1", "contact", contact)
    c = contacts.loc[contact]
    assert as_contact["existing"] and as_contact["tier"] in ("certain", "probable")
    assert as_contact["duplicate_name"] == f"{c['last_name']} {c['first_name']} {c['middle_name']}"
    assert pd.isna(as_contact["duplicate_line"]) and as_contact["line"] == 2
    assert "email" in as_contact["explanation"]
    as_company = match("2", "company", company)
    assert as_company["existing"] and as_company["tier"] in ("certain", "probable")
    assert as_company["duplicate_name"] == companies.loc[company, "title"]
    assert "phone" in as_company["explanation"]
    assert "3" not in by_new  # the lead duplicating nothing
    # as `crm-dedup check` prints them: each match named by its type
    shown = {summary_line(r, "lead", from_file=True) for r in rows.to_dict("records")}
    assert any(line.startswith(f"line 2 {c['last_name']} ") and f"~  contact #{contact} " in line for line in shown), shown
    assert any(line.startswith("line 3 ") and f"~  company #{company} " in line for line in shown), shown
    assert match("4", "lead", lead)["existing"]
    # a client is only ever a contact or a company, the records of the other kind are leads
    assert set(rows["duplicate_type"]) <= {"lead", "contact", "company"}
    assert rows["probability"].between(0, 1).all()
    assert rows["probability"].is_monotonic_decreasing

    # the lead-lead pairs are those of a check that does not match leads to clients
    alone, _ = check_new_records(crm.url, "lead", csv=csv, settings_path=_settings(tmp_path, False))
    assert set(alone["duplicate_type"]) == {"lead"}
    pd.testing.assert_frame_equal(rows[rows["duplicate_type"] == "lead"].reset_index(drop=True), alone)


def test_leads_added_since_the_last_run_are_checked_against_clients(crm, tmp_path):
    from pipelines import steps

    settings = _settings(tmp_path, True)
    run_id, folder = steps.new_run(crm.url, ["contact", "company", "lead"], str(tmp_path / "runs"))
    for entity in ("contact", "company", "lead"):  # (the check reuses the clients this run normalised)
        steps.find_step(crm.url, entity, folder, settings)
    proposals.finish_run(crm, run_id, "completed", {})
    c, comm, le = schema.contacts, schema.communications, schema.leads
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=5)
    with crm.engine.begin() as conn:
        person = conn.execute(sa.select(c.c.id, c.c.last_name, c.c.first_name, c.c.middle_name, comm.c.value)
                              .join(comm, sa.and_(comm.c.entity_type == "contact", comm.c.entity_id == c.c.id,
                                                  comm.c.type == "email"))
                              .where(c.c.middle_name.is_not(None)).order_by(c.c.id).limit(1)).one()
        top = conn.execute(sa.select(sa.func.max(le.c.id))).scalar_one()
        conn.execute(le.insert().values(id=top + 1, title="Заявка", last_name=person.last_name,
                                        first_name=person.first_name, middle_name=person.middle_name,
                                        created_at=later, modified_at=later))
        conn.execute(comm.insert().values(entity_type="lead", entity_id=top + 1, type="email", kind="work",
                                          value=person.value))
    rows, _ = check_new_records(crm.url, "lead", settings_path=settings)
    hit = rows[(rows["new_record"] == str(top + 1)) & (rows["duplicate_type"] == "contact")]
    assert str(person.id) in set(hit["duplicate_of"]), rows
    assert set(rows["new_record"]) == {str(top + 1)}
    # the clients normalised anew find what those the run normalised find
    pd.testing.assert_frame_equal(check_new_records(crm.url, "lead", settings_path=settings, reuse=False)[0], rows)
    off, _ = check_new_records(crm.url, "lead", settings_path=_settings(tmp_path, False))
    assert "contact" not in set(off["duplicate_type"])
