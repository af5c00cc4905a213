"""lis — laboratory: orders, specimens, analysers over HL7 v2 / MLLP and ASTM, validation, reference
ranges, critical values. Depends on his and core only."""

from __future__ import annotations


def init_app(app) -> None:
    from lis import web

    web.init_app(app)


def register_cli(group) -> None:
    from lis import cli

    cli.register(group)
