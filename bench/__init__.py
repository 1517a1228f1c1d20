"""peft-bench: the harness. The module map, lowest layer first, is in README.md (Development);
``tests/test_layout.py`` keeps imports pointing one way.

Methods live in the ``methods`` package and tasks in ``tasks``; this package knows them only
through their registries.
"""

__version__ = "0.1.0"
