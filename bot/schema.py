"""The database schema: every table mailfix keeps, in one place.

The Alembic migrations in `bot/migrations/versions/` own the real schema; `METADATA` mirrors
them and a test compares the two on SQLite and PostgreSQL. Everything a second replica needs
lives here — diagnoses and their leases, helpdesk cases, fix proposals with their state machine,
approvals, button presses, the message ids a replica needs to update a card, conversation
references, Slack installations, pattern alerts — and an append-only audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC datetimes only")
        value = value.astimezone(UTC)
        # SQLite compares the stored text: keep one fixed format, without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType = JSON().with_variant(postgresql.JSONB(), "postgresql")

METADATA = MetaData()

diagnoses = Table(
    "diagnoses",
    METADATA,
    # Integer key: insertion order breaks ties between equal `created_at` (coarse clocks).
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("person_id", String(255), nullable=False),
    Column("person_email", String(320)),
    Column("conversation", String(512), nullable=False),
    Column("address", String(320), nullable=False),
    Column("client", String(16), nullable=False),
    Column("app", String(64), nullable=False),
    Column("symptom", String(64)),
    Column("answers", JsonType, nullable=False),
    Column("state", String(16), nullable=False),
    Column("report", JsonType),
    Column("error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # A running diagnosis belongs to one replica while its lease is renewed; a lapsed lease
    # means that replica died, and whoever notices fails it and tells the person.
    Column("lease_owner", String(128)),
    Column("lease_until", UtcDateTime),
    # Slack team id / Teams tenant id the person asked from (migration 0003): a replica tells
    # the person outside a turn with that workspace's credentials.
    Column("workspace", String(64)),
    UniqueConstraint("id", name="uq_diagnoses_id"),
    Index("ix_diagnoses_person_created", "person_id", "created_at"),
)

follow_ups = Table(
    "follow_ups",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column(
        "diagnosis_id",
        String(64),
        ForeignKey("diagnoses.id", ondelete="CASCADE", name="fk_follow_ups_diagnosis"),
        nullable=False,
    ),
    Column("kind", String(32), nullable=False),
    Column("person_id", String(255), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_follow_ups_diagnosis", "diagnosis_id", "seq"),
)

processed_events = Table(
    "processed_events",
    METADATA,
    Column("event_id", String(255), primary_key=True),
    Column("seen_at", UtcDateTime, nullable=False),
    Index("ix_processed_events_seen_at", "seen_at"),
)

conversation_refs = Table(
    "conversation_refs",
    METADATA,
    Column("key", String(512), primary_key=True),
    Column("platform", String(16), nullable=False),
    Column("ref", JsonType, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


# --- the helpdesk loop (migration 0002) -------------------------------------------------------

cases = Table(
    "cases",
    METADATA,
    # The number people quote ("case 42"): an integer that only grows.
    Column("number", Integer, primary_key=True, autoincrement=True),
    Column(
        "diagnosis_id",
        String(64),
        ForeignKey("diagnoses.id", ondelete="SET NULL", name="fk_cases_diagnosis"),
    ),
    Column("platform", String(16), nullable=False),
    Column("workspace", String(64)),  # Slack team id / Teams tenant id the case came from
    Column("person_id", String(255), nullable=False),
    Column("person_name", String(255), nullable=False),
    Column("person_email", String(320)),
    Column("address", String(320), nullable=False),
    Column("organisation", String(255), nullable=False),  # the address's domain
    Column("answers", JsonType, nullable=False),
    Column("top_cause", String(64)),
    Column("state", String(16), nullable=False),  # open | claimed | waiting | resolved
    Column("claimed_by", String(255)),
    Column("claimed_by_name", String(255)),
    Column("question", Text),  # the open question to the person, when waiting
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Index("ix_cases_pattern", "organisation", "top_cause", "created_at"),
    Index("ix_cases_person", "person_id", "created_at"),
)

proposals = Table(
    "proposals",
    METADATA,
    Column("id", String(64), primary_key=True),
    Column(
        "case_number",
        Integer,
        ForeignKey("cases.number", ondelete="CASCADE", name="fk_proposals_case"),
        nullable=False,
    ),
    Column("check_id", String(64), nullable=False),
    Column("remediation", JsonType, nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    # proposed -> approved -> applying -> applied | failed; or rejected | expired
    Column("state", String(16), nullable=False),
    Column("approvals_needed", Integer, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(128)),  # the replica applying it
    Column("lease_until", UtcDateTime),  # heartbeat: renewed while applying
    Column("attempts", Integer, nullable=False, default=0),
    Column("result", JsonType),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("case_number", "idempotency_key", name="uq_proposals_case_key"),
    Index("ix_proposals_state_lease", "state", "lease_until"),
)

approvals = Table(
    "approvals",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column(
        "proposal_id",
        String(64),
        ForeignKey("proposals.id", ondelete="CASCADE", name="fk_approvals_proposal"),
        nullable=False,
    ),
    Column("approver_id", String(255), nullable=False),
    Column("approver_name", String(255), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("decision", String(16), nullable=False),  # approve | reject
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("proposal_id", "approver_id", name="uq_approvals_once_per_person"),
)

# One row per button press that acted: the primary key is what makes a double click, a
# platform retry or a second replica a no-op (the INSERT that loses changes nothing).
button_presses = Table(
    "button_presses",
    METADATA,
    Column("key", String(512), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_button_presses_at", "at"),
)

# Where a card lives, so any replica can update it in place (Slack channel + ts; Teams
# conversation reference + activity id).
message_refs = Table(
    "message_refs",
    METADATA,
    Column("key", String(255), primary_key=True),
    Column("platform", String(16), nullable=False),
    Column("ref", JsonType, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Append-only: rows are added, never changed; only the retention job deletes old ones.
audit_log = Table(
    "audit_log",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_id", String(255), nullable=False),
    Column("actor_name", String(255), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("case_number", Integer),  # no foreign key: the trail outlives the case
    Column("proposal_id", String(64)),
    Column("request", JsonType),
    Column("result", JsonType),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_log_case", "case_number", "seq"),
    Index("ix_audit_log_at", "at"),
)

pattern_alerts = Table(
    "pattern_alerts",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("organisation", String(255), nullable=False),
    Column("cause", String(64), nullable=False),
    Column("first_at", UtcDateTime, nullable=False),
    Column("last_at", UtcDateTime, nullable=False),
    Column("case_numbers", JsonType, nullable=False),
    # The window this alert opened in; one alert per organisation, cause and window.
    Column("window_start", UtcDateTime, nullable=False),
    UniqueConstraint("organisation", "cause", "window_start", name="uq_pattern_alerts_window"),
)

# Slack's multi-workspace OAuth install: slack_sdk's own SQLAlchemy stores read these.
slack_installations = SQLAlchemyInstallationStore.build_installations_table(
    METADATA, SQLAlchemyInstallationStore.default_installations_table_name
)
slack_bots = SQLAlchemyInstallationStore.build_bots_table(
    METADATA, SQLAlchemyInstallationStore.default_bots_table_name
)
slack_oauth_states = SQLAlchemyOAuthStateStore.build_oauth_states_table(
    METADATA, SQLAlchemyOAuthStateStore.default_table_name
)
