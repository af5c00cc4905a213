"""The background jobs and event subscribers of his, imported in every process through core.modules
(after his.models, so no model module needs to import an operations module)."""

from his import admission as _admission  # noqa: F401 (frees the bed of a stay cancelled by mistake)
from his.gateway import jobs as _gateway_jobs  # noqa: F401 (the card-check retry)
