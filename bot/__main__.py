"""`python -m bot` is the `mailfix` command."""

from bot.cli import main

main()
