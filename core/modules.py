"""The installed domain modules, loaded by name from configuration (core imports no domain).

A domain package exposes, in its __init__, any of:
    init_app(app)        blueprints, navigation entries, event subscribers
    register_cli(group)  click commands under `vnhis`
and may have a `models` module (imported so Alembic and the mapper see its tables) and a
`permissions` module (imported so its permissions and role grants are declared).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from core.config import DEFAULT_MODULES


def load(names=None) -> list[ModuleType]:
    importlib.import_module("core.jobs")  # the platform's own jobs
    importlib.import_module("core.events")  # and the event delivery job
    loaded = []
    for name in names or DEFAULT_MODULES:
        module = importlib.import_module(name)
        for part in ("models", "permissions", "jobs"):
            if importlib.util.find_spec(f"{name}.{part}") is not None:
                importlib.import_module(f"{name}.{part}")
        loaded.append(module)
    return loaded


def import_models(names=None) -> None:
    importlib.import_module("core.models")
    load(names)
