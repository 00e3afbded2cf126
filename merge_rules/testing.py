"""Data and checks shared by the merge tests and the merge benchmark.

- ``load_sample``: a small hand-written CRM in Russian and English whose groups the golden tests
  describe (ids are fixed; see SAMPLE_GROUPS);
- ``load_synthetic``: any number of duplicate groups with communications and links, for the
  benchmark, the fault tests and the property tests;
- ``dump_crm``: every row of every CRM table, sorted, to compare a database before and after;
- ``dangling_links``: link rows that point at a missing or deleted record (conservation).
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from crm import schema

D = dt.datetime
# entity type -> (primary, members incl. primary) of the sample CRM
SAMPLE_GROUPS = {
    "contact": [(10, [10, 11, 12]), (13, [13, 14])],
    "company": [(20, [20, 22]), (23, [23, 24])],
    "lead": [(601, [601, 602])],
}


def _contact(id, last, first, middle=None, *, birthdate=None, post=None, address=None, comments=None,
             source=None, tax_id=None, resp=None, created, modified) -> dict[str, Any]:
    return dict(id=id, last_name=last, first_name=first, middle_name=middle, birthdate=birthdate, post=post,
                address=address, comments=comments, source=source, tax_id=tax_id, responsible_id=resp,
                created_at=created, modified_at=modified, deleted_at=None)


def _company(id, title, *, industry=None, address=None, tax_id=None, website=None, comments=None, source=None,
             resp=None, created, modified) -> dict[str, Any]:
    return dict(id=id, title=title, industry=industry, address=address, tax_id=tax_id, website=website,
                comments=comments, source=source, responsible_id=resp, created_at=created, modified_at=modified,
                deleted_at=None)


def _lead(id, title, *, last=None, first=None, middle=None, company_title=None, status=None, source=None,
          comments=None, contact_id=None, company_id=None, resp=None, created, modified) -> dict[str, Any]:
    return dict(id=id, title=title, last_name=last, first_name=first, middle_name=middle,
                company_title=company_title, status=status, source=source, comments=comments,
                contact_id=contact_id, company_id=company_id, responsible_id=resp, created_at=created,
                modified_at=modified, deleted_at=None)


def sample_rows() -> dict[str, list[dict[str, Any]]]:
    """The sample CRM, table by table."""
    users = [
        dict(id=1, name="Админ Главный", email="admin@example.ru", role="admin"),
        dict(id=2, name="Мария Иванова", email="maria@example.ru", role="manager"),
        dict(id=3, name="Пётр Сидоров", email="petr@example.ru", role="manager"),
        dict(id=4, name="John Smith", email="john@example.com", role="manager"),
    ]
    contacts = [
        # Russian group: 10 primary, 11 and 12 duplicates
        _contact(10, "Иванов", "Иван", "Иванович", post="Директор", address="Москва, ул. Ленина, 1",
                 comments="Звонить после 15:00", source="web", tax_id="500100732259", resp=2,
                 created=D(2023, 1, 10, 9, 0), modified=D(2024, 3, 1, 12, 0)),
        _contact(11, "иванов ", "Иван", None, birthdate=dt.date(1980, 5, 17), post="Генеральный директор",
                 comments="Просил КП до пятницы", source="phone", tax_id="123", resp=3,
                 created=D(2022, 11, 5, 8, 30), modified=D(2024, 4, 15, 16, 45, 30, 123456)),
        _contact(12, "Иванов", "Иван", "Иванович", comments="звонить после 15:00", resp=2,
                 created=D(2023, 6, 1, 10, 0), modified=D(2023, 6, 1, 10, 0)),
        # English group: 13 primary, 14 duplicate, both John Smith's (manager 4)
        _contact(13, "Smith", "Jonathan", None, post=None, source="import", resp=4,
                 created=D(2021, 2, 3, 4, 5), modified=D(2021, 2, 3, 4, 5)),
        _contact(14, "Smith", "Jon", "Paul", post="CTO", address="1 Main St, Springfield",
                 comments="Met at the expo", resp=4, created=D(2022, 7, 8, 9, 10), modified=D(2023, 1, 1)),
        # not a duplicate of anyone
        _contact(15, "Петрова", "Анна", None, resp=2, created=D(2023, 1, 1), modified=D(2023, 1, 1)),
    ]
    companies = [
        _company(20, "ООО «Ромашка»", address="Москва, Тверская, 7", tax_id="7707083894", website="romashka.ru",
                 resp=2, created=D(2020, 5, 5), modified=D(2024, 1, 1)),
        _company(21, "АО «Лютик»", tax_id="7736207543", resp=2, created=D(2020, 6, 6), modified=D(2020, 6, 6)),
        _company(22, "Ромашка ООО", industry="Торговля", tax_id="7707083893", website="https://www.romashka.ru/",
                 comments="Старый клиент", resp=3, created=D(2019, 3, 3), modified=D(2023, 12, 12)),
        _company(23, "Acme Corp", industry="Manufacturing", resp=4, created=D(2018, 1, 1), modified=D(2022, 1, 1)),
        _company(24, "ACME Corporation", industry="Retail", website="acme.com", comments="Billing in USD",
                 resp=4, created=D(2019, 1, 1), modified=D(2024, 2, 2)),
    ]
    leads = [
        _lead(600, "Иванов Иван: заявка", last="Иванов", first="Иван", status="NEW", contact_id=11, resp=3,
              created=D(2024, 4, 1), modified=D(2024, 4, 1)),
        _lead(601, "Заявка с сайта", last="Петров", first="Олег", status="NEW", source="web", resp=2,
              created=D(2024, 5, 1), modified=D(2024, 5, 1)),
        _lead(602, "Петров: повторная заявка", last="Петров", first="Олег", middle="Ильич", status="IN_PROCESS",
              comments="Перезвонить", company_id=21, resp=2, created=D(2024, 5, 3), modified=D(2024, 5, 4)),
    ]

    def comm(id, et, eid, type_, value, kind="work"):
        return dict(id=id, entity_type=et, entity_id=eid, type=type_, kind=kind, value=value)

    communications = [
        comm(1, "contact", 10, "phone", "+7 (916) 123-45-67", "mobile"),
        comm(2, "contact", 10, "email", "ivanov@mail.ru"),
        comm(3, "contact", 11, "phone", "8 916 123 45 67"),            # repeat of 1
        comm(4, "contact", 11, "phone", "+7 495 765-43-21 доб. 12"),  # new
        comm(5, "contact", 11, "email", " IVANOV@mail.ru"),           # repeat of 2
        comm(6, "contact", 12, "email", "i.ivanov@yandex.ru", "home"),  # new
        comm(7, "contact", 12, "web", "ivanov.ru"),                    # new
        comm(8, "contact", 13, "email", "jsmith@acme.com"),
        comm(9, "contact", 14, "email", "JSmith@Acme.com"),            # repeat of 8
        comm(10, "contact", 14, "phone", "+1 (212) 555-0100"),
        comm(11, "company", 20, "phone", "+7 495 111-22-33"),
        comm(12, "company", 22, "phone", "84951112233"),               # repeat of 11
        comm(13, "company", 22, "email", "info@romashka.ru"),
        comm(14, "lead", 601, "phone", "+7 903 000-11-22"),
        comm(15, "lead", 602, "phone", "+79030001122"),                # repeat of 14
    ]
    contact_companies = [
        dict(contact_id=10, company_id=20, is_primary=True),
        dict(contact_id=11, company_id=20, is_primary=False),  # collides with (10, 20): folded
        dict(contact_id=11, company_id=21, is_primary=True),   # moves; 10 keeps 20 as its primary company
        dict(contact_id=12, company_id=22, is_primary=False),
        dict(contact_id=13, company_id=23, is_primary=True),
        dict(contact_id=14, company_id=24, is_primary=True),
    ]

    def deal(id, title, contact=None, company=None, lead=None, amount="1000.00", resp=2):
        return dict(id=id, title=title, contact_id=contact, company_id=company, lead_id=lead, stage="NEW",
                    amount=Decimal(amount), currency="RUB", responsible_id=resp, created_at=D(2024, 1, 1, 12))

    deals = [
        deal(100, "Поставка", contact=10, company=20),
        deal(101, "Внедрение", contact=11, company=21, amount="250000.50", resp=3),
        deal(102, "Обучение", contact=12, company=22, amount="15000.00"),
        deal(103, "Support", contact=14, company=24, resp=4),
        deal(104, "Первая сделка", lead=602, amount="99.99"),
        deal(105, "Лютик", contact=15, company=21),
    ]

    def doc(id, deal_id, contact=None, company=None, amount="10.00"):
        return dict(id=id, deal_id=deal_id, contact_id=contact, company_id=company, amount=Decimal(amount),
                    currency="RUB", status="sent", created_at=D(2024, 2, 2, 2, 2, 2, 222222))

    invoices = [doc(200, 101, contact=11, company=21, amount="250000.50"), doc(201, 102, contact=12, company=22)]
    quotes = [doc(300, 102, contact=12, company=22), doc(301, 103, contact=14, company=24)]

    def act(id, et, eid, kind, subject, resp=2):
        return dict(id=id, entity_type=et, entity_id=eid, kind=kind, subject=subject, completed=False,
                    responsible_id=resp, created_at=D(2024, 3, 3))

    activities = [act(400, "contact", 11, "call", "Звонок"), act(401, "contact", 10, "meeting", "Встреча"),
                  act(402, "company", 22, "email", "Письмо"), act(403, "contact", 14, "task", "Follow up", 4),
                  act(404, "lead", 602, "call", "Перезвонить")]

    def hist(id, et, eid, event="created", message="Created"):
        return dict(id=id, entity_type=et, entity_id=eid, event=event, message=message, user_id=None,
                    created_at=D(2024, 1, 1))

    history = [hist(500, "contact", 11), hist(501, "contact", 12), hist(502, "company", 22),
               hist(503, "contact", 14), hist(504, "lead", 602)]
    demo_truth = [dict(entity_type="contact", entity_id=i, cluster="c-ivanov", note=None) for i in (10, 11, 12)]
    return dict(users=users, contacts=contacts, companies=companies, leads=leads, communications=communications,
                contact_companies=contact_companies, deals=deals, invoices=invoices, quotes=quotes,
                activities=activities, history=history, demo_truth=demo_truth)


def _load(store, tables: dict[str, list[dict[str, Any]]]) -> None:
    with store.engine.begin() as conn:
        for table in schema.metadata.sorted_tables:
            rows = tables.get(table.name)
            if rows:
                store.insert(table, rows, conn=conn)
        store.fix_sequences(conn)


def load_sample(store) -> None:
    """Insert the sample CRM (an empty database expected)."""
    _load(store, sample_rows())


# -- synthetic groups ---------------------------------------------------------------------------

_LAST = ["Иванов", "Петров", "Сидоров", "Smith", "Brown", "Кузнецов", "Johnson", "Попов", "Williams", "Соколов"]
_FIRST = ["Иван", "Пётр", "Анна", "John", "Mary", "Ольга", "James", "Сергей", None]
_POST = ["Директор", "Manager", "CTO", "Бухгалтер", None, None]
_TITLE = ["ООО «Ромашка»", "Acme Corp", "АО «Лютик»", "Globex LLC", "ИП Петров", "Initech"]


def synthetic_rows(n_groups: int, *, seed: int = 0, mix: dict[str, float] | None = None,
                   users: int = 4) -> tuple[dict[str, list[dict]], dict[str, list[tuple[int, list[int]]]]]:
    """Rows for ``n_groups`` duplicate groups of 2-3 records, each record with communications and links
    (deals, invoices, quotes, activities, history, contact-company links, leads pointing at contacts),
    plus one unrelated record per 5 groups. Returns (tables, groups per entity type)."""
    rng = random.Random(seed)
    mix = mix or {"contact": 0.6, "company": 0.3, "lead": 0.1}
    t: dict[str, list[dict]] = defaultdict(list)
    groups: dict[str, list[tuple[int, list[int]]]] = defaultdict(list)
    t["users"] = [dict(id=1, name="Админ", email="admin@bench", role="admin")] + [
        dict(id=i, name=f"Менеджер {i}", email=f"m{i}@bench", role="manager") for i in range(2, users + 1)]
    ids = defaultdict(int)

    def nid(table):
        ids[table] += 1
        return ids[table]

    base = D(2020, 1, 1)

    def when():
        return base + dt.timedelta(seconds=rng.randrange(0, 4 * 365 * 86400), microseconds=rng.randrange(10**6))

    def maybe(values):
        return rng.choice(values)

    companies_live: list[int] = []
    # a pool of companies the contacts link to, not themselves in any group
    for _ in range(max(3, n_groups // 10)):
        cid = nid("companies")
        t["companies"].append(_company(cid, maybe(_TITLE), resp=rng.randint(1, users), created=when(),
                                       modified=when()))
        companies_live.append(cid)
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    for g in range(n_groups + n_groups // 5):
        et = rng.choices(kinds, weights)[0]
        size = 1 if g >= n_groups else rng.choice((2, 2, 3))
        resp = rng.randint(1, users)
        phone = f"+7 9{rng.randrange(10**8, 10**9)}"
        members = []
        for _ in range(size):
            created, modified = sorted((when(), when()))
            r = resp if rng.random() < 0.8 else rng.randint(1, users)
            if et == "contact":
                rid = nid("contacts")
                t["contacts"].append(_contact(rid, maybe(_LAST), maybe(_FIRST), maybe([None, "Ильич"]),
                                              birthdate=maybe([None, dt.date(1980, 1, 2), dt.date(1990, 3, 4)]),
                                              post=maybe(_POST), comments=maybe([None, "Комментарий", "Call back"]),
                                              resp=r, created=created, modified=modified))
            elif et == "company":
                rid = nid("companies")
                t["companies"].append(_company(rid, maybe(_TITLE), industry=maybe([None, "IT", "Торговля"]),
                                               comments=maybe([None, "Note"]), resp=r, created=created,
                                               modified=modified))
            else:
                rid = nid("leads")
                t["leads"].append(_lead(rid, maybe(["Заявка", "Lead", None]), last=maybe(_LAST),
                                        status=maybe(["NEW", "IN_PROCESS"]), resp=r, created=created,
                                        modified=modified))
            members.append(rid)
            for _ in range(rng.randint(1, 3)):
                value = maybe([phone, phone.replace("+7", "8"), f"+7 9{rng.randrange(10**8, 10**9)}",
                               f"user{rng.randrange(1000)}@mail.ru"])
                t["communications"].append(dict(id=nid("communications"), entity_type=et, entity_id=rid,
                                                type="email" if "@" in value else "phone",
                                                kind=maybe(schema.COMM_KINDS), value=value))
            col = {"contact": "contact_id", "company": "company_id", "lead": "lead_id"}[et]
            for _ in range(rng.randint(0, 2)):
                did = nid("deals")
                t["deals"].append(dict({"contact_id": None, "company_id": None, "lead_id": None, col: rid},
                                       id=did, title="Сделка", stage="NEW",
                                       amount=Decimal(rng.randrange(100, 10**7)) / 100, currency="RUB",
                                       responsible_id=r, created_at=when()))
                if et != "lead" and rng.random() < 0.5:
                    for doc in ("invoices", "quotes"):
                        t[doc].append(dict({"contact_id": None, "company_id": None, col: rid},
                                           id=nid(doc), deal_id=did, amount=Decimal("12.30"), currency="RUB",
                                           status="sent", created_at=when()))
            for _ in range(rng.randint(0, 3)):
                t["activities"].append(dict(id=nid("activities"), entity_type=et, entity_id=rid,
                                            kind=maybe(schema.ACTIVITY_KINDS), subject="Звонок", completed=False,
                                            responsible_id=r, created_at=when()))
            for _ in range(rng.randint(0, 2)):
                t["history"].append(dict(id=nid("history"), entity_type=et, entity_id=rid, event="created",
                                         message="Created", user_id=None, created_at=when()))
            if et == "contact":
                for cid in rng.sample(companies_live, rng.randint(0, 2)):
                    t["contact_companies"].append(dict(contact_id=rid, company_id=cid,
                                                       is_primary=rng.random() < 0.5))
        if size > 1:
            groups[et].append((members[0], members))
    # some leads point at contacts of the groups (moved when those contacts merge)
    contact_ids = [r["id"] for r in t["contacts"]]
    for lead in t["leads"]:
        if contact_ids and rng.random() < 0.3:
            lead["contact_id"] = rng.choice(contact_ids)
    return dict(t), dict(groups)


def load_synthetic(store, n_groups: int, *, seed: int = 0, mix: dict[str, float] | None = None
                   ) -> dict[str, list[tuple[int, list[int]]]]:
    """Insert ``n_groups`` synthetic duplicate groups with links; returns the groups per entity type."""
    tables, groups = synthetic_rows(n_groups, seed=seed, mix=mix)
    _load(store, tables)
    return groups


# -- checks -------------------------------------------------------------------------------------

def dump_crm(store, tables=schema.CRM_TABLES) -> dict[str, list[tuple]]:
    """Every row and column of the CRM tables, sorted by primary key."""
    out = {}
    with store.engine.connect() as conn:
        for table in tables:
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def dangling_links(store) -> list[str]:
    """Rows that point at a contact, company or lead that does not exist or is deleted."""
    live: dict[str, set[int]] = {}
    problems = []
    with store.engine.connect() as conn:
        for et, table in schema.ENTITY_TABLES.items():
            live[et] = set(conn.execute(sa.select(table.c.id).where(table.c.deleted_at.is_(None))).scalars())
        refs = {"contact_id": "contact", "company_id": "company", "lead_id": "lead"}
        for table in (schema.deals, schema.invoices, schema.quotes, schema.contact_companies, schema.leads):
            cols = [c for c in refs if c in table.c]
            for row in conn.execute(sa.select(table)).mappings():
                if table is schema.leads and row["deleted_at"] is not None:
                    continue
                for c in cols:
                    if row[c] is not None and row[c] not in live[refs[c]]:
                        problems.append(f"{table.name} {dict(row)} points at {refs[c]} #{row[c]}, which is not live")
        for table in (schema.activities, schema.history, schema.communications):
            for row in conn.execute(sa.select(table.c.id, table.c.entity_type, table.c.entity_id)).all():
                if row.entity_id not in live[row.entity_type]:
                    problems.append(f"{table.name} #{row.id} points at {row.entity_type} #{row.entity_id}, "
                                    "which is not live")
    return problems
