"""`python -m drd` runs the command line."""

from drd.cli import run

run()
