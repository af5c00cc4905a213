"""Imported by the module loader: the pacs reactions to his events (worklist from imaging orders)."""

from pacs import worklist  # noqa: F401 (its @events.subscribe handlers)
