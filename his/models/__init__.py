"""The tables of his, one module per area; all are imported here so the mapper and Alembic see them."""

from his import _submodules

AREAS = [module.__name__ for module in _submodules(__name__)]
