"""Alembic migrations of the one vnhis schema (shipped inside the package so `vnhis db upgrade` works
from an installed copy)."""
