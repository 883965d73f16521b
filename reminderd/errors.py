"""The one error tree of reminderd.

ReminderdError
├── ConfigError            bad config file or value; exit code 2
├── InputError             bad user input (key, payload, schedule, CLI value); exit code 2
│   ├── KeyNameError       a trigger key that does not follow the key contract
│   ├── PayloadError       payload not a JSON object, or too large
│   └── ScheduleError      a schedule that can never fire or does not parse
├── NotFoundError          a reminder or dead letter that does not exist; exit code 1
├── RedisUnavailableError  Redis cannot be reached; exit code 3
└── ProcessorError         raised by processors; the type decides what happens next
    ├── RetryableError     transient: retried with backoff (``retry_after_s`` is honoured)
    │   └── Deferred       not a failure: try again at ``retry_after_s`` without using an attempt
    ├── PermanentError     never retried: the occurrence is dead-lettered at once
    └── SkipOccurrence     deliberate no-op (opt-out): counted as done, logged as skipped

Retryable versus permanent is decided by the exception type alone, never by parsing
messages. Any other exception raised by a processor counts as retryable: a bug in a
processor must not lose the reminder, and the attempt limit bounds the retries.
"""

from __future__ import annotations


class ReminderdError(Exception):
    """Base of every error reminderd raises on purpose."""

    exit_code = 2


class ConfigError(ReminderdError):
    """The configuration is invalid; the message names the file and the path inside it."""

    exit_code = 2


class InputError(ReminderdError):
    """Input a user controls was rejected; the message says what was expected."""

    exit_code = 2


class KeyNameError(InputError):
    """A trigger key name does not follow ``<prefix>-<userId>-<type>``."""


class PayloadError(InputError):
    """A payload is not a JSON object or exceeds the configured size limit."""


class ScheduleError(InputError):
    """A schedule cannot be parsed or can never produce a due time."""


class NotFoundError(ReminderdError):
    """The named reminder or dead letter does not exist."""

    exit_code = 1


class RedisUnavailableError(ReminderdError):
    """Redis could not be reached (connection refused, timeout, auth failure)."""

    exit_code = 3


class ProcessorError(ReminderdError):
    """Raised by a processor to say how its failure must be handled."""


class RetryableError(ProcessorError):
    """A transient failure (timeout, 429, 5xx): retry with backoff."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Deferred(RetryableError):
    """Not now, and not a failure (a shared rate limit is saturated): the occurrence is
    moved to ``retry_after_s`` from now without counting an attempt, so a burst larger than
    the provider's rate is sent at that rate instead of being dead-lettered."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class PermanentError(ProcessorError):
    """A failure that retrying cannot fix (4xx, bad recipient): dead-letter at once."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SkipOccurrence(ProcessorError):
    """The processor chose not to act (for example the user opted out)."""
