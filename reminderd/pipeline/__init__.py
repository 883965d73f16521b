"""The one path of an occurrence.

The subscriber leaves hints (expired keys, wake-ups); intake (timer, sweep, event
batches) claims what is due and hands it to dispatch, which decides with the pure
functions of ``decisions`` (prepare, plan, judge), runs the processors and gives the
verdict to the finisher, which writes every kind of verdict in batches; recovery
reconciles after start-up and outages.
"""
