"""Background jobs of billing (imported by core.modules): claim submission and the check-in record."""

from billing import checkin, submission  # noqa: F401
