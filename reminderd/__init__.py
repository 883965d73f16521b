"""reminderd: per-user reminders fired on time from Redis."""

__version__ = "0.1.0"
