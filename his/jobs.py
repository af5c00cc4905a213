"""The background jobs of his, imported by every worker through core.modules."""

from his.gateway import jobs as _gateway_jobs  # noqa: F401 (the card-check retry)
