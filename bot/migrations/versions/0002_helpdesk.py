"""The helpdesk loop: cases, proposals, approvals, button presses, message references, the
audit log, pattern alerts, Slack installations; leases on running diagnoses.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The DDL of bot.schema.UtcDateTime; migrations never import application code.
UTC_DATETIME = sa.DateTime(timezone=True)
JsonType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("diagnoses") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(128)))
        batch.add_column(sa.Column("lease_until", UTC_DATETIME))

    op.create_table(
        "cases",
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "diagnosis_id",
            sa.String(64),
            sa.ForeignKey("diagnoses.id", ondelete="SET NULL", name="fk_cases_diagnosis"),
        ),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("workspace", sa.String(64)),
        sa.Column("person_id", sa.String(255), nullable=False),
        sa.Column("person_name", sa.String(255), nullable=False),
        sa.Column("person_email", sa.String(320)),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("organisation", sa.String(255), nullable=False),
        sa.Column("answers", JsonType, nullable=False),
        sa.Column("top_cause", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(255)),
        sa.Column("claimed_by_name", sa.String(255)),
        sa.Column("question", sa.Text),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("resolved_at", UTC_DATETIME),
    )
    op.create_index("ix_cases_pattern", "cases", ["organisation", "top_cause", "created_at"])
    op.create_index("ix_cases_person", "cases", ["person_id", "created_at"])

    op.create_table(
        "proposals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "case_number",
            sa.Integer,
            sa.ForeignKey("cases.number", ondelete="CASCADE", name="fk_proposals_case"),
            nullable=False,
        ),
        sa.Column("check_id", sa.String(64), nullable=False),
        sa.Column("remediation", JsonType, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("approvals_needed", sa.Integer, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", UTC_DATETIME),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("result", JsonType),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("case_number", "idempotency_key", name="uq_proposals_case_key"),
    )
    op.create_index("ix_proposals_state_lease", "proposals", ["state", "lease_until"])

    op.create_table(
        "approvals",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "proposal_id",
            sa.String(64),
            sa.ForeignKey("proposals.id", ondelete="CASCADE", name="fk_approvals_proposal"),
            nullable=False,
        ),
        sa.Column("approver_id", sa.String(255), nullable=False),
        sa.Column("approver_name", sa.String(255), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("proposal_id", "approver_id", name="uq_approvals_once_per_person"),
    )

    op.create_table(
        "button_presses",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_button_presses_at", "button_presses", ["at"])

    op.create_table(
        "message_refs",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("ref", JsonType, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("actor_id", sa.String(255), nullable=False),
        sa.Column("actor_name", sa.String(255), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("case_number", sa.Integer),
        sa.Column("proposal_id", sa.String(64)),
        sa.Column("request", JsonType),
        sa.Column("result", JsonType),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_case", "audit_log", ["case_number", "seq"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "pattern_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organisation", sa.String(255), nullable=False),
        sa.Column("cause", sa.String(64), nullable=False),
        sa.Column("first_at", UTC_DATETIME, nullable=False),
        sa.Column("last_at", UTC_DATETIME, nullable=False),
        sa.Column("case_numbers", JsonType, nullable=False),
        sa.Column("window_start", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint(
            "organisation", "cause", "window_start", name="uq_pattern_alerts_window"
        ),
    )

    # slack_sdk's SQLAlchemy installation and OAuth state stores (slack_sdk 3.x table layout).
    op.create_table(
        "slack_installations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(32), nullable=False),
        sa.Column("enterprise_id", sa.String(32)),
        sa.Column("enterprise_name", sa.String(200)),
        sa.Column("enterprise_url", sa.String(200)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("team_name", sa.String(200)),
        sa.Column("bot_token", sa.String(200)),
        sa.Column("bot_id", sa.String(32)),
        sa.Column("bot_user_id", sa.String(32)),
        sa.Column("bot_scopes", sa.String(1000)),
        sa.Column("bot_refresh_token", sa.String(200)),
        sa.Column("bot_token_expires_at", sa.DateTime),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("user_token", sa.String(200)),
        sa.Column("user_scopes", sa.String(1000)),
        sa.Column("user_refresh_token", sa.String(200)),
        sa.Column("user_token_expires_at", sa.DateTime),
        sa.Column("incoming_webhook_url", sa.String(200)),
        sa.Column("incoming_webhook_channel", sa.String(200)),
        sa.Column("incoming_webhook_channel_id", sa.String(200)),
        sa.Column("incoming_webhook_configuration_url", sa.String(200)),
        sa.Column("is_enterprise_install", sa.Boolean, nullable=False),
        sa.Column("token_type", sa.String(32)),
        sa.Column("installed_at", sa.DateTime, nullable=False),
    )
    op.create_index(
        "slack_installations_idx",
        "slack_installations",
        ["client_id", "enterprise_id", "team_id", "user_id", "installed_at"],
    )
    op.create_table(
        "slack_bots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(32), nullable=False),
        sa.Column("enterprise_id", sa.String(32)),
        sa.Column("enterprise_name", sa.String(200)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("team_name", sa.String(200)),
        sa.Column("bot_token", sa.String(200)),
        sa.Column("bot_id", sa.String(32)),
        sa.Column("bot_user_id", sa.String(32)),
        sa.Column("bot_scopes", sa.String(1000)),
        sa.Column("bot_refresh_token", sa.String(200)),
        sa.Column("bot_token_expires_at", sa.DateTime),
        sa.Column("is_enterprise_install", sa.Boolean, nullable=False),
        sa.Column("installed_at", sa.DateTime, nullable=False),
    )
    op.create_index(
        "slack_bots_idx", "slack_bots", ["client_id", "enterprise_id", "team_id", "installed_at"]
    )
    op.create_table(
        "slack_oauth_states",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(200), nullable=False),
        sa.Column("expire_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slack_oauth_states")
    op.drop_index("slack_bots_idx", table_name="slack_bots")
    op.drop_table("slack_bots")
    op.drop_index("slack_installations_idx", table_name="slack_installations")
    op.drop_table("slack_installations")
    op.drop_table("pattern_alerts")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_audit_log_case", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("message_refs")
    op.drop_index("ix_button_presses_at", table_name="button_presses")
    op.drop_table("button_presses")
    op.drop_table("approvals")
    op.drop_index("ix_proposals_state_lease", table_name="proposals")
    op.drop_table("proposals")
    op.drop_index("ix_cases_person", table_name="cases")
    op.drop_index("ix_cases_pattern", table_name="cases")
    op.drop_table("cases")
    with op.batch_alter_table("diagnoses") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
