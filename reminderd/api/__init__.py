"""The faces for producers and operators: the reminders API, status and dead letters.

``from reminderd.api import AsyncReminders, Reminders, When`` is the public entry point;
the modules behind it may move.
"""

from reminderd.api.reminders import AsyncReminders, Reminders, When

__all__ = ["AsyncReminders", "Reminders", "When"]
