"""``python -m mab`` runs the CLI."""

from mab.entry import main

main()
