"""The workspace a diagnosis was asked from (Slack team id / Teams tenant id), so a replica can
reach the person outside a turn with that workspace's credentials (a multi-workspace Slack
install: the lapsed-lease message goes out with the right workspace's bot token).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("diagnoses") as batch:
        batch.add_column(sa.Column("workspace", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("diagnoses") as batch:
        batch.drop_column("workspace")
