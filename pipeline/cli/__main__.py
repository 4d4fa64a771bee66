"""``python -m pipeline.cli``: the command line, as the ``sharing-audit`` script runs it."""

from pipeline.cli.main import main

main()
