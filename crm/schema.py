"""The CRM schema, in SQLAlchemy Core, identical on SQLite and PostgreSQL.

Two groups of tables live here:
- the CRM itself (users, contacts, companies, leads, their communications and everything that links
  to them), which crm-dedup reads and, when merging, writes;
- crm-dedup's own bookkeeping (runs, proposed groups, merge history, skips, together marks), prefixed
  ``dedup_``.

Timestamps are naive UTC. Every entity row carries ``deleted_at`` so that a merge can soft-delete.

Every table with an integer ``id`` is ``sqlite_autoincrement``: SQLite would otherwise hand the highest
deleted ids out again (the repeated phones a merge drops, hard-deleted duplicates), and undoing that
merge, which puts its rows back under their ids, would collide with the new rows. PostgreSQL's
sequences never reuse ids. Migration 0009 converts older SQLite databases.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ENTITY_TYPES = ("contact", "company", "lead")
COMM_TYPES = ("phone", "email", "web", "im")
COMM_KINDS = ("work", "mobile", "home", "other")
ROLES = ("admin", "manager")
ACTIVITY_KINDS = ("call", "meeting", "email", "task")


def _timestamps() -> list[Column]:
    return [
        Column("responsible_id", Integer, ForeignKey("users.id"), nullable=True, index=True),
        Column("created_at", DateTime, nullable=False),
        Column("modified_at", DateTime, nullable=False),
        Column("deleted_at", DateTime, nullable=True),
    ]


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    Column("phone", String(64)),
    Column("role", String(16), nullable=False),
    Column("department", String(200)),
    Column("password_hash", String(255)),
    Column("signed_out_at", DateTime),  # review page sessions begun before it are over (migration 0008)
    CheckConstraint("role IN ('admin', 'manager')", name="role"),
    sqlite_autoincrement=True,
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_name", String(200)),
    Column("first_name", String(200)),
    Column("middle_name", String(200)),
    Column("birthdate", Date),
    Column("post", String(200)),
    Column("address", Text),
    Column("comments", Text),
    Column("source", String(100)),
    Column("tax_id", String(32)),
    *_timestamps(),
    sqlite_autoincrement=True,
)

companies = Table(
    "companies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(500), nullable=False),
    Column("industry", String(200)),
    Column("address", Text),
    Column("tax_id", String(32)),
    Column("website", String(500)),
    Column("comments", Text),
    Column("source", String(100)),
    *_timestamps(),
    sqlite_autoincrement=True,
)

leads = Table(
    "leads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(500)),
    Column("last_name", String(200)),
    Column("first_name", String(200)),
    Column("middle_name", String(200)),
    Column("company_title", String(500)),
    Column("status", String(50)),
    Column("source", String(100)),
    Column("comments", Text),
    # set when a lead is linked to the existing client it duplicates
    Column("contact_id", Integer, ForeignKey("contacts.id"), index=True),
    Column("company_id", Integer, ForeignKey("companies.id"), index=True),
    *_timestamps(),
    sqlite_autoincrement=True,
)

communications = Table(
    "communications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(16), nullable=False),
    Column("entity_id", Integer, nullable=False),
    Column("type", String(8), nullable=False),
    Column("kind", String(8), nullable=False, server_default="work"),
    Column("value", String(1000), nullable=False),
    CheckConstraint("entity_type IN ('contact', 'company', 'lead')", name="entity_type"),
    CheckConstraint("type IN ('phone', 'email', 'web', 'im')", name="type"),
    CheckConstraint("kind IN ('work', 'mobile', 'home', 'other')", name="kind"),
    Index("ix_communications_entity", "entity_type", "entity_id"),
    sqlite_autoincrement=True,
)

contact_companies = Table(
    "contact_companies",
    metadata,
    Column("contact_id", Integer, ForeignKey("contacts.id"), primary_key=True),
    Column("company_id", Integer, ForeignKey("companies.id"), primary_key=True),
    Column("is_primary", Boolean, nullable=False, server_default="0"),
    Index("ix_contact_companies_company", "company_id"),
)

deals = Table(
    "deals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(500), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id"), index=True),
    Column("company_id", Integer, ForeignKey("companies.id"), index=True),
    Column("lead_id", Integer, ForeignKey("leads.id"), index=True),
    Column("stage", String(50), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("responsible_id", Integer, ForeignKey("users.id")),
    Column("created_at", DateTime, nullable=False),
    sqlite_autoincrement=True,
)


def _money_document(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("deal_id", Integer, ForeignKey("deals.id"), index=True),
        Column("contact_id", Integer, ForeignKey("contacts.id"), index=True),
        Column("company_id", Integer, ForeignKey("companies.id"), index=True),
        Column("amount", Numeric(14, 2), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("status", String(50), nullable=False),
        Column("created_at", DateTime, nullable=False),
        sqlite_autoincrement=True,
    )


invoices = _money_document("invoices")
quotes = _money_document("quotes")

activities = Table(
    "activities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(16), nullable=False),
    Column("entity_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("completed", Boolean, nullable=False, server_default="0"),
    Column("responsible_id", Integer, ForeignKey("users.id")),
    Column("created_at", DateTime, nullable=False),
    CheckConstraint("kind IN ('call', 'meeting', 'email', 'task')", name="kind"),
    Index("ix_activities_entity", "entity_type", "entity_id"),
    sqlite_autoincrement=True,
)

history = Table(
    "history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(16), nullable=False),
    Column("entity_id", Integer, nullable=False),
    Column("event", String(50), nullable=False),
    Column("message", Text, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id")),
    Column("created_at", DateTime, nullable=False),
    Index("ix_history_entity", "entity_type", "entity_id"),
    sqlite_autoincrement=True,
)

# The generator's truth: which records are one real-world entity. Only evaluation reads it.
demo_truth = Table(
    "demo_truth",
    metadata,
    Column("entity_type", String(16), primary_key=True),
    Column("entity_id", Integer, primary_key=True),
    Column("cluster", String(64), nullable=False, index=True),
    Column("note", String(200)),
)

CRM_TABLES = (
    users, contacts, companies, leads, communications, contact_companies,
    deals, invoices, quotes, activities, history, demo_truth,
)

# ---------------------------------------------------------------------------------------------
# crm-dedup's own tables

dedup_runs = Table(
    "dedup_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(16), nullable=False),  # running, completed, failed, cancelled (Ctrl-C, a stop)
    Column("entity_types", String(100), nullable=False),
    Column("folder", Text),
    Column("summary", JSON),
)

dedup_groups = Table(
    "dedup_groups",
    metadata,
    Column("id", String(64), primary_key=True),  # stable: derived from entity type and primary id
    Column("entity_type", String(16), nullable=False),
    Column("run_id", String(64), ForeignKey("dedup_runs.id"), nullable=False, index=True),
    # pending -> approved -> applied; or skipped; stale when the records changed under the plan
    Column("status", String(16), nullable=False, index=True),
    Column("tier", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("primary_id", Integer, nullable=False),
    Column("member_ids", JSON, nullable=False),
    Column("responsible_ids", JSON, nullable=False),
    Column("primary_reason", Text, nullable=False),
    Column("criteria", Text, nullable=False),  # "2 matches by phone, 1 by email"
    Column("pairs", JSON),
    Column("approved_by", Integer, ForeignKey("users.id")),
    Column("approved_at", DateTime),
    Column("merge_id", Integer),
    Column("updated_at", DateTime, nullable=False),
    # records in no group although probable or better with a member (a skip or the chaining guard
    # kept them out): [{id, partner, probability, explanation, reason}], so that merging the group
    # does not leave a duplicate behind unseen; None where there are none (last: migration 0010)
    Column("left_out", JSON),
    # the review list: filtered by type, status, tier and run, most certain first; PostgreSQL also
    # carries the managers so that counting a manager's groups never reads the table
    Index("ix_dedup_groups_list", "entity_type", "status", "score", "tier", "run_id",
          postgresql_include=["responsible_ids"]),
)

# A group's merge plan, apart from the group (proposals.read_groups joins them): a run writes each
# chunk of plans here as soon as it is made, under its run id, so that replacing the pending groups
# at the end is one short transaction over small rows. A group's plan is the one of its run_id.
dedup_plans = Table(
    "dedup_plans",
    metadata,
    Column("group_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("dedup_runs.id"), primary_key=True),
    Column("plan", JSON, nullable=False),
)

dedup_merges = Table(
    "dedup_merges",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("group_id", String(64), index=True),  # the review page: who just merged this group (0012)
    Column("batch_id", String(64), index=True),
    Column("entity_type", String(16), nullable=False),
    Column("primary_id", Integer, nullable=False),
    Column("merged_ids", JSON, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id")),
    Column("merged_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False),  # applied, undone
    Column("undone_at", DateTime),
    Column("undone_by", Integer, ForeignKey("users.id")),
    Column("summary", Text, nullable=False),
    # before-image of every touched row: {table: [row, ...]}, and the after-image to detect drift
    Column("before_image", JSON, nullable=False),
    Column("after_image", JSON, nullable=False),
    UniqueConstraint("batch_id", "group_id", name="batch_group"),
    # the review page: the merges made at a merged record's deleted_at (queries.merged_into) (0013)
    Index("ix_dedup_merges_merged_at", "entity_type", "merged_at"),
    sqlite_autoincrement=True,
)

dedup_skips = Table(
    "dedup_skips",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(16), nullable=False),
    Column("id_a", Integer, nullable=False),  # id_a < id_b
    Column("id_b", Integer, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id")),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("entity_type", "id_a", "id_b", name="pair"),
    # a record's marks are id_a = X OR id_b = X: the pair's key serves the first (migration 0012)
    Index("ix_dedup_skips_id_b", "entity_type", "id_b"),
    sqlite_autoincrement=True,
)

# "the same": pairs a person put in one group (`crm-dedup include`, the review page's "Add to this
# group"); every later run groups them together, the counterpart of dedup_skips (migration 0011)
dedup_together = Table(
    "dedup_together",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(16), nullable=False),
    Column("id_a", Integer, nullable=False),  # id_a < id_b
    Column("id_b", Integer, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id")),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("entity_type", "id_a", "id_b", name="together_pair"),
    Index("ix_dedup_together_id_b", "entity_type", "id_b"),  # as dedup_skips' (migration 0012)
    sqlite_autoincrement=True,
)

DEDUP_TABLES = (dedup_runs, dedup_groups, dedup_plans, dedup_merges, dedup_skips, dedup_together)

ENTITY_TABLES = {"contact": contacts, "company": companies, "lead": leads}
