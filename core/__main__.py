"""`python -m core` is the `vnhis` command."""

from core.cli import main

main()
