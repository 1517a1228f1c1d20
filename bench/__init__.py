"""peft-bench: the harness. ``cli`` (run, ls, report, micro), ``registry``, ``config`` (Budget,
presets), ``runner`` (plan, executors, one job), ``train`` (the loop), ``evaluate`` (generation,
log-likelihood, classification), ``measure`` (memory, throughput), ``records`` (schema, atomic
write), ``report`` (tables and plots), ``models`` (aliases and loading).

Methods live in the ``methods`` package and tasks in ``tasks``; this package knows them only
through their registries.
"""

__version__ = "0.1.0"
