"""``python -m agents``: the full command line, worker included."""

from agents.cli import main

main()
