"""audit_events: a partial index of the events the sealer has not chained yet

The sealer asks for `seq IS NULL ORDER BY id` after every burst of commits. Each sealing update
writes a new row version and new index entries (seq is indexed, so it is never a HOT update), so a
scan by id or seq walked thousands of dead entries to find a handful of unsealed events (seen: 234
pages for 0 rows, 0.4 ms a seal and growing until autovacuum). This index holds only the unsealed
ones.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_unsealed", "audit_events", ["id"], postgresql_where=sa.text("seq IS NULL"),
                    sqlite_where=sa.text("seq IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
