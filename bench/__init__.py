"""The reminderd benchmark: ``python -m bench`` (see ``docs/benchmark.md``).

Every system runs against its own private redis-server with identical settings
(``--save ''``, ``appendonly no``, ``notify-keyspace-events Ex``), as real processes,
and every fire is recorded by the system itself with the wall clock of this machine,
so lateness, lost and duplicated counts come from the same kind of evidence for all.
"""
