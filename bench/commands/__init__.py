"""The commands of ``python -m bench`` that are not benchmarks: ``run``, ``ls`` and ``report``.

Each command module offers ``add_arguments(parser)`` and ``main(args) -> exit code``; ``bench.cli``
dispatches from its table of commands. To add a command: a module with those two functions
and a row in ``bench.cli.COMMANDS``.
"""
