"""The faces for producers and operators: the reminders API, status and dead letters.

``from reminderd.api import AsyncReminders, Reminders, When`` is the public entry point;
the modules behind it may move.
"""

from reminderd.api.reminders import AsyncReminders, When
from reminderd.api.sync import Reminders

__all__ = ["AsyncReminders", "Reminders", "When"]
