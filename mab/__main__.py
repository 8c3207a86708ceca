"""``python -m mab`` runs the CLI."""

from mab.cli import main

main()
