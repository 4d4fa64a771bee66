"""The ``sharing-audit`` command line: ``main`` in :mod:`pipeline.cli.main`, and one module per
command or group of commands; shared options in :mod:`pipeline.cli.options`, exits in
:mod:`pipeline.cli.exits`, what a terminal shows in :mod:`pipeline.cli.terminal`."""
