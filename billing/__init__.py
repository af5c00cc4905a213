"""billing — charges, the BHYT cost split, cashless payment, claim XML and submission.
Depends on his and core only."""


def init_app(app) -> None:
    from billing import web

    web.init_app(app)


def register_cli(group) -> None:
    from billing import cli

    cli.register(group)
