"""his catalogues: ICD-10, services (DVKT), drugs, supplies and their prices

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Money = sa.Numeric(15, 3)


def _item_columns() -> list:
    return [
        sa.Column("id", BigId, nullable=False),
        sa.Column("code", sa.String(50), nullable=False),
        sa.Column("bhyt_code", sa.String(50), nullable=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("name_folded", sa.String(1000), nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
    ]


def _create_item(table: str, *extra) -> None:
    op.create_table(
        table, *_item_columns(), *extra,
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("code", name=op.f(f"uq_{table}_code")),
    )
    op.create_index(op.f(f"ix_{table}_bhyt_code"), table, ["bhyt_code"])
    op.create_index(op.f(f"ix_{table}_name_folded"), table, ["name_folded"])


def _create_prices(table: str, item_column: str, item_table: str, *extra, checks=()) -> None:
    op.create_table(
        table,
        sa.Column("id", BigId, nullable=False),
        sa.Column(item_column, BigId, nullable=False),
        *extra,
        sa.Column("price", Money, nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.ForeignKeyConstraint([item_column], [f"{item_table}.id"],
                                name=op.f(f"fk_{table}_{item_column}_{item_table}")),
        sa.CheckConstraint("price >= 0", name=op.f(f"ck_{table}_price")),
        *checks,
    )
    op.create_index(op.f(f"ix_{table}_{item_column}"), table, [item_column])


def upgrade() -> None:
    op.create_table(
        "catalog_icd10_codes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("code", sa.String(10), nullable=False),
        sa.Column("dagger_asterisk", sa.String(1), nullable=True),
        sa.Column("name_vi", sa.String(500), nullable=True),
        sa.Column("name_en", sa.String(500), nullable=True),
        sa.Column("name_folded", sa.String(1000), nullable=False),
        sa.Column("chapter", sa.String(20), nullable=True),
        sa.Column("block", sa.String(20), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("not_principal", sa.Boolean(), nullable=False),
        sa.Column("discouraged_principal", sa.Boolean(), nullable=False),
        sa.Column("not_for_use", sa.Boolean(), nullable=False),
        sa.Column("cause_of_death_only", sa.Boolean(), nullable=False),
        sa.Column("sex", sa.String(6), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_icd10_codes")),
        sa.UniqueConstraint("version", "code", name=op.f("uq_catalog_icd10_codes_version")),
        sa.CheckConstraint("sex IN ('female', 'male')", name=op.f("ck_catalog_icd10_codes_sex")),
    )
    op.create_index(op.f("ix_catalog_icd10_codes_code"), "catalog_icd10_codes", ["code"])

    _create_item("catalog_services", sa.Column("group", sa.String(100), nullable=True))
    _create_item(
        "catalog_drugs",
        sa.Column("active_ingredient", sa.String(500), nullable=False),
        sa.Column("strength", sa.String(200), nullable=True),
        sa.Column("dosage_form", sa.String(200), nullable=True),
        sa.Column("route", sa.String(100), nullable=True),
        sa.Column("registration_number", sa.String(50), nullable=True),
        sa.Column("manufacturer", sa.String(300), nullable=True),
        sa.Column("country", sa.String(100), nullable=True),
        sa.Column("is_narcotic", sa.Boolean(), nullable=False),
        sa.Column("is_psychotropic", sa.Boolean(), nullable=False),
        sa.Column("is_prescription_only", sa.Boolean(), nullable=False),
    )
    _create_item("catalog_supplies")

    _create_prices("catalog_service_prices", "service_id", "catalog_services",
                   sa.Column("payer", sa.String(10), nullable=False),
                   checks=[sa.CheckConstraint("payer IN ('bhyt', 'fee', 'on_demand')",
                                              name=op.f("ck_catalog_service_prices_payer"))])
    _create_prices("catalog_drug_prices", "drug_id", "catalog_drugs")
    _create_prices("catalog_supply_prices", "supply_id", "catalog_supplies")


def downgrade() -> None:
    for table in ("catalog_supply_prices", "catalog_drug_prices", "catalog_service_prices",
                  "catalog_supplies", "catalog_drugs", "catalog_services", "catalog_icd10_codes"):
        op.drop_table(table)
