"""The one path of an occurrence: intake (timer, sweep, event batches) and the subscriber feed
dispatch, which runs the gates and the processors, judges the outcome and finishes it
(completions, retries, dead letters); recovery reconciles after start-up and outages.
"""
