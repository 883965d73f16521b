"""The domain, pure: the trigger-key contract, schedules and due times, cron, quiet hours,
backoff, durations and PII masking. No I/O and no clock: every instant is an argument, so
each rule is a plain function with a plain unit test.
"""
