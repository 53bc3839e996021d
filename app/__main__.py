"""`python -m filterscope serve`: the same as the `filterscope` command."""

from .cli import main

main()
