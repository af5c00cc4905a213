"""BHYT gateway (exchanges, card checks)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _fk(table: str, column: str, target: str):
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "gateway_exchanges",
        sa.Column("id", BigId, nullable=False),
        sa.Column("operation", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(100), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("request_headers", Json, nullable=False),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("sent_at", Ts, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_headers", Json, nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("received_at", Ts, nullable=True),
        sa.Column("elapsed_ms", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(120), nullable=True),
        sa.CheckConstraint("outcome IN ('ok', 'refused', 'auth', 'timeout', 'unavailable', 'error')",
                           name=op.f("ck_gateway_exchanges_outcome")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_exchanges")),
    )
    op.create_index(op.f("ix_gateway_exchanges_subject"), "gateway_exchanges", ["subject"])
    op.create_index(op.f("ix_gateway_exchanges_sent_at"), "gateway_exchanges", ["sent_at"])

    op.create_table(
        "bhyt_card_checks",
        sa.Column("id", BigId, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("encounter_id", sa.Integer(), nullable=True),
        sa.Column("query_kind", sa.String(12), nullable=False),
        sa.Column("query_number", sa.String(15), nullable=False),
        sa.Column("query_name", sa.String(200), nullable=False),
        sa.Column("query_birth", sa.String(10), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("problem", sa.String(30), nullable=True),
        sa.Column("result_code", sa.String(10), nullable=True),
        sa.Column("card_number", sa.String(15), nullable=True),
        sa.Column("benefit_level", sa.String(4), nullable=True),
        sa.Column("registered_facility", sa.String(5), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("five_years_since", sa.Date(), nullable=True),
        sa.Column("other_card_number", sa.String(15), nullable=True),
        sa.Column("other_valid_from", sa.Date(), nullable=True),
        sa.Column("other_valid_to", sa.Date(), nullable=True),
        sa.Column("warnings", Json, nullable=False),
        sa.Column("response", Json, nullable=True),
        sa.Column("exchange_id", sa.BigInteger(), nullable=True),
        sa.Column("bhyt_card_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_at", Ts, nullable=False),
        sa.Column("checked_at", Ts, nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("superseded_at", Ts, nullable=True),
        sa.CheckConstraint("status IN ('verified', 'refused', 'pending')", name=op.f("ck_bhyt_card_checks_status")),
        sa.CheckConstraint("query_kind IN ('card', 'national_id')", name=op.f("ck_bhyt_card_checks_query_kind")),
        _fk("bhyt_card_checks", "patient_id", "patients"),
        _fk("bhyt_card_checks", "encounter_id", "encounters"),
        _fk("bhyt_card_checks", "bhyt_card_id", "bhyt_cards"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bhyt_card_checks")),
    )
    op.create_index(op.f("ix_bhyt_card_checks_patient_id"), "bhyt_card_checks", ["patient_id"])
    op.create_index(op.f("ix_bhyt_card_checks_encounter_id"), "bhyt_card_checks", ["encounter_id"])
    op.create_index("ix_bhyt_card_checks_status_current", "bhyt_card_checks", ["status", "superseded_at"])


def downgrade() -> None:
    op.drop_table("bhyt_card_checks")
    op.drop_table("gateway_exchanges")
