"""Initial schema: diagnoses, follow-ups, processed events, conversation references.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The DDL of bot.storage.UtcDateTime; migrations never import application code.
UTC_DATETIME = sa.DateTime(timezone=True)
JsonType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "diagnoses",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("person_id", sa.String(255), nullable=False),
        sa.Column("person_email", sa.String(320)),
        sa.Column("conversation", sa.String(512), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("client", sa.String(16), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("symptom", sa.String(64)),
        sa.Column("answers", JsonType, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("report", JsonType),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("id", name="uq_diagnoses_id"),
    )
    op.create_index("ix_diagnoses_person_created", "diagnoses", ["person_id", "created_at"])

    op.create_table(
        "follow_ups",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "diagnosis_id",
            sa.String(64),
            sa.ForeignKey("diagnoses.id", ondelete="CASCADE", name="fk_follow_ups_diagnosis"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("person_id", sa.String(255), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_follow_ups_diagnosis", "follow_ups", ["diagnosis_id", "seq"])

    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("seen_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_processed_events_seen_at", "processed_events", ["seen_at"])

    op.create_table(
        "conversation_refs",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("ref", JsonType, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conversation_refs")
    op.drop_index("ix_processed_events_seen_at", table_name="processed_events")
    op.drop_table("processed_events")
    op.drop_index("ix_follow_ups_diagnosis", table_name="follow_ups")
    op.drop_table("follow_ups")
    op.drop_index("ix_diagnoses_person_created", table_name="diagnoses")
    op.drop_table("diagnoses")
