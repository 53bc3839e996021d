"""`python -m app serve`: the same as the `filterscope` command."""

from app.cli import main

main()
