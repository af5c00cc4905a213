"""medical records (forms, documents, versions, signatures)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Clinical rows are never deleted; a version's content and a signature never change once written
# (a version's content may only be erased by the audited end-of-retention purge, which sets
# vnhis.ehr_purge for its own transaction).
NO_DELETE_TABLES = ("ehr_records", "ehr_documents", "ehr_versions", "ehr_signatures", "ehr_certificates",
                    "ehr_break_glass", "ehr_access_grants")
PG_FUNCTIONS = """
CREATE FUNCTION ehr_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ehr: rows of % are never deleted (cancel them instead)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE FUNCTION ehr_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The end-of-retention purge, and nothing else: content and canonical bytes erased once, every
    -- other column as it was.
    IF current_setting('vnhis.ehr_purge', true) = 'on' AND OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL
       AND NEW.content = '{}'::jsonb AND NEW.canonical = ''::bytea
       AND NEW.id = OLD.id AND NEW.document_id = OLD.document_id AND NEW.number = OLD.number
       AND NEW.content_hash = OLD.content_hash AND NEW.author_id IS NOT DISTINCT FROM OLD.author_id
       AND NEW.author_name = OLD.author_name AND NEW.recorded_at = OLD.recorded_at
       AND NEW.amend_reason IS NOT DISTINCT FROM OLD.amend_reason THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ehr: a version is immutable (an edit makes a new version)'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE FUNCTION ehr_signatures_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ehr: a signature is immutable' USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def _fk(table: str, column: str, target: str):
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "ehr_records",
        sa.Column("id", BigId, nullable=False),
        sa.Column("encounter_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("form_code", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("opened_at", Ts, nullable=False),
        sa.Column("opened_by", sa.Integer(), nullable=True),
        sa.Column("closed_at", Ts, nullable=True),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sa.Column("archived_at", Ts, nullable=True),
        sa.Column("retention_class", sa.String(20), nullable=True),
        sa.Column("retention_until", sa.Date(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("destroyed_at", Ts, nullable=True),
        sa.Column("destroyed_by", sa.Integer(), nullable=True),
        sa.Column("destroy_reason", sa.Text(), nullable=True),
        sa.Column("imported_from", sa.String(200), nullable=True),
        sa.CheckConstraint("status IN ('active', 'closed', 'archived', 'destroyed')",
                           name=op.f("ck_ehr_records_status")),
        sa.CheckConstraint("retention_class IS NULL OR retention_class IN ('standard', 'special', 'death', "
                           "'permanent')", name=op.f("ck_ehr_records_retention_class")),
        _fk("ehr_records", "encounter_id", "encounters"),
        _fk("ehr_records", "patient_id", "patients"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_records")),
        sa.UniqueConstraint("encounter_id", name=op.f("uq_ehr_records_encounter_id")),
    )
    op.create_index(op.f("ix_ehr_records_patient_id"), "ehr_records", ["patient_id"])

    op.create_table(
        "ehr_documents",
        sa.Column("id", BigId, nullable=False),
        sa.Column("record_id", BigId, nullable=False),
        sa.Column("form_code", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("signed_version", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(200), nullable=False),
        sa.Column("clinical_time", Ts, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("source_ref", sa.String(80), nullable=True),
        sa.Column("cancelled_at", Ts, nullable=True),
        sa.Column("cancelled_by", sa.Integer(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("restored_at", Ts, nullable=True),
        sa.Column("restored_by", sa.Integer(), nullable=True),
        sa.Column("restore_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('active', 'cancelled')", name=op.f("ck_ehr_documents_status")),
        _fk("ehr_documents", "record_id", "ehr_records"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_documents")),
        sa.UniqueConstraint("source_ref", name=op.f("uq_ehr_documents_source_ref")),
    )
    op.create_index(op.f("ix_ehr_documents_record_id"), "ehr_documents", ["record_id"])
    op.create_index("ix_ehr_documents_author_unsigned", "ehr_documents", ["author_id", "signed_version"])

    op.create_table(
        "ehr_versions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("document_id", BigId, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content", Json, nullable=False),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(200), nullable=False),
        sa.Column("recorded_at", Ts, nullable=False),
        sa.Column("amend_reason", sa.Text(), nullable=True),
        sa.Column("purged_at", Ts, nullable=True),
        _fk("ehr_versions", "document_id", "ehr_documents"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_versions")),
        sa.UniqueConstraint("document_id", "number", name=op.f("uq_ehr_versions_document_id")),
    )

    op.create_table(
        "ehr_certificates",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("not_before", Ts, nullable=False),
        sa.Column("not_after", Ts, nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("revoked_at", Ts, nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("kind IN ('ca', 'external_ca', 'staff', 'organisation', 'tsa')",
                           name=op.f("ck_ehr_certificates_kind")),
        _fk("ehr_certificates", "user_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_certificates")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_ehr_certificates_fingerprint")),
    )
    op.create_index(op.f("ix_ehr_certificates_user_id"), "ehr_certificates", ["user_id"])

    op.create_table(
        "ehr_software_keys",
        sa.Column("id", BigId, nullable=False),
        sa.Column("certificate_id", BigId, nullable=False),
        sa.Column("encrypted_pkcs8", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        _fk("ehr_software_keys", "certificate_id", "ehr_certificates"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_software_keys")),
        sa.UniqueConstraint("certificate_id", name=op.f("uq_ehr_software_keys_certificate_id")),
    )

    op.create_table(
        "ehr_signatures",
        sa.Column("id", BigId, nullable=False),
        sa.Column("version_id", BigId, nullable=False),
        sa.Column("certificate_id", BigId, nullable=False),
        sa.Column("signer_id", sa.Integer(), nullable=True),
        sa.Column("signer_name", sa.String(200), nullable=False),
        sa.Column("signer_title", sa.String(80), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("cms", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", Ts, nullable=False),
        sa.Column("tsa_token", sa.LargeBinary(), nullable=True),
        sa.Column("tsa_time", Ts, nullable=True),
        _fk("ehr_signatures", "version_id", "ehr_versions"),
        _fk("ehr_signatures", "certificate_id", "ehr_certificates"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_signatures")),
    )
    op.create_index(op.f("ix_ehr_signatures_version_id"), "ehr_signatures", ["version_id"])

    op.create_table(
        "ehr_break_glass",
        sa.Column("id", BigId, nullable=False),
        sa.Column("record_id", BigId, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", Ts, nullable=False),
        sa.Column("expires_at", Ts, nullable=False),
        sa.Column("reviewed_at", Ts, nullable=True),
        sa.Column("reviewed_by", sa.Integer(), nullable=True),
        _fk("ehr_break_glass", "record_id", "ehr_records"),
        _fk("ehr_break_glass", "user_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_break_glass")),
    )
    op.create_index(op.f("ix_ehr_break_glass_record_id"), "ehr_break_glass", ["record_id"])
    op.create_index(op.f("ix_ehr_break_glass_user_id"), "ehr_break_glass", ["user_id"])

    op.create_table(
        "ehr_access_grants",
        sa.Column("id", BigId, nullable=False),
        sa.Column("record_id", BigId, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("can_copy", sa.Boolean(), nullable=False),
        sa.Column("granted_by", sa.Integer(), nullable=True),
        sa.Column("valid_from", Ts, nullable=False),
        sa.Column("valid_to", Ts, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        _fk("ehr_access_grants", "record_id", "ehr_records"),
        _fk("ehr_access_grants", "user_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_access_grants")),
    )
    op.create_index(op.f("ix_ehr_access_grants_record_id"), "ehr_access_grants", ["record_id"])
    op.create_index(op.f("ix_ehr_access_grants_user_id"), "ehr_access_grants", ["user_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTIONS)
        for table in NO_DELETE_TABLES:
            op.execute(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION ehr_no_delete()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION ehr_no_delete()")
        op.execute("CREATE TRIGGER ehr_versions_no_update BEFORE UPDATE ON ehr_versions "
                   "FOR EACH ROW EXECUTE FUNCTION ehr_versions_immutable()")
        op.execute("CREATE TRIGGER ehr_signatures_no_update BEFORE UPDATE ON ehr_signatures "
                   "FOR EACH ROW EXECUTE FUNCTION ehr_signatures_immutable()")


def downgrade() -> None:
    for table in ("ehr_access_grants", "ehr_break_glass", "ehr_signatures", "ehr_software_keys",
                  "ehr_certificates", "ehr_versions", "ehr_documents", "ehr_records"):
        op.drop_table(table)  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ehr_no_delete()")
        op.execute("DROP FUNCTION ehr_versions_immutable()")
        op.execute("DROP FUNCTION ehr_signatures_immutable()")
