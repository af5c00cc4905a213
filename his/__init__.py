"""his — the hospital backbone: patients, encounters, queue tickets, departments, staff, catalogues,
orders, admission/transfer/discharge, beds, pharmacy stock. Depends only on core.

Sub-areas plug in without editing this file: every module of `his.web` that defines `bp` is a
blueprint, every module of `his.models` is imported for its tables, and every `his.*_cli` module's
`register(group)` adds commands under `vnhis his`.
"""

from __future__ import annotations

import importlib
import pkgutil


def _submodules(package: str):
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")


def init_app(app) -> None:
    from his.web import panels

    app.jinja_env.globals["his_panels"] = panels.render_all
    for module in _submodules("his.web"):
        bp = getattr(module, "bp", None)
        if bp is not None:
            app.register_blueprint(bp)


def register_cli(group) -> None:
    from his.gateway.cli import gateway_sim

    group.add_command(gateway_sim)  # `vnhis gateway-sim`: the BHYT portal stand-in

    @group.group("his")
    def his_group() -> None:
        """Hospital backbone: catalogues, organisation, administrative units."""

    for info in pkgutil.iter_modules(__path__):
        if info.name.endswith("_cli"):
            importlib.import_module(f"his.{info.name}").register(his_group)

