"""pacs — DICOM node, worklist, DICOMweb and previews. Depends on his and core only."""

from __future__ import annotations


def register_cli(group) -> None:
    from pacs import cli

    cli.register(group)


def init_app(app) -> None:
    from pacs import web

    web.init_app(app)
