"""``reminderd run``: the lifecycle around the pipeline (start-up, reload, housekeeping, drain)."""
