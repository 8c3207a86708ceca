"""``python -m mab`` runs the CLI."""

from mab.cli.main import main

main()
