"""``python -m mlmatch`` runs the command line."""

from mlmatch.cli import main

main(prog_name="mlmatch")
