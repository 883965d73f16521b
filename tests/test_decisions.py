"""The pipeline's pure decisions: prepare, plan, outcome_of and judge, on plain values (no Redis)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from reminderd.config import load_config_text
from reminderd.config.model import RetrySettings, Settings
from reminderd.core.schedules import Every, Once
from reminderd.errors import Deferred, PermanentError, RetryableError, SkipOccurrence
from reminderd.models import Misfire
from reminderd.pipeline.decisions import (
    Complete,
    Dead,
    Defer,
    Outcome,
    Prepared,
    Retry,
    Run,
    Skip,
    judge,
    outcome_of,
    plan,
    prepare,
)
from reminderd.storage.store import Claim

NOW_MS = 1_750_000_000_000  # 2025-06-15 15:06:40 UTC
MINUTE_MS = 60_000
KEY = "send_message-42-daily"
NO_JITTER = RetrySettings(max_attempts=3, backoff="1s", backoff_max="5s", jitter=0)


def settings(**rule: Any) -> Settings:
    """Settings whose rule ``send_message`` runs processors a and b, with ``rule`` options."""
    data = {
        "processors": {"a": {"type": "log"}, "b": {"type": "log"}},
        "rules": {"send_message": {"processors": ["a", "b"], **rule}},
        "daemon": {"misfire_grace": "1s"},
    }
    return load_config_text(yaml.safe_dump(data))


def claim(**fields: Any) -> Claim:
    """A first attempt of a one-shot due a moment ago; keyword arguments override fields."""
    values: dict[str, Any] = {
        "member": KEY,
        "due_at_ms": NOW_MS - 10,
        "nominal_due_ms": NOW_MS - 10,
        "occurrence": 1,
        "attempts": 0,
        "payload_json": "",
        "schedule": Once(NOW_MS - 10),
        "misfire": None,
        "done": (),
        "raw": False,
        "now_ms": NOW_MS,
    }
    values.update(fields)
    return Claim(**values)


def planned(c: Claim, s: Settings) -> Skip | Defer | Run:
    """``plan`` for a claim that ``prepare`` accepts."""
    prepared = prepare(c, s)
    assert isinstance(prepared, Prepared)
    return plan(c, prepared.occ, prepared.rule, s)


def late_minutely(minutes: int) -> Claim:
    """A minutely reminder's first attempt, taken ``minutes`` after its nominal due time."""
    nominal = NOW_MS - minutes * MINUTE_MS
    return claim(due_at_ms=nominal, nominal_due_ms=nominal, schedule=Every(MINUTE_MS, nominal))


def test_prepare_reads_the_claim_as_the_occurrence_processors_get() -> None:
    """The occurrence carries the key's parts, the payload, the nominal due time and the attempt number."""
    prepared = prepare(claim(payload_json='{"name":"Ada"}', attempts=2, due_at_ms=NOW_MS), settings())
    assert isinstance(prepared, Prepared)
    occ = prepared.occ
    assert (occ.rule, occ.user_id, occ.type, dict(occ.payload)) == (
        "send_message",
        "42",
        "daily",
        {"name": "Ada"},
    )
    assert (occ.due_at_ms, occ.fired_at_ms, occ.attempt, occ.profile) == (NOW_MS - 10, NOW_MS, 3, None)


def test_prepare_dead_letters_what_it_cannot_read() -> None:
    """A key no rule owns and a payload that is not JSON become dead letters, not runs."""
    assert prepare(claim(member="other-1-x"), settings()) == Dead(
        "no_rule", "matches no configured rule prefix"
    )
    poison = prepare(claim(payload_json="{nope"), settings())
    assert isinstance(poison, Dead)
    assert (poison.reason, poison.rule) == ("poison_payload", "send_message")


def test_plan_runs_the_processors_not_done_yet() -> None:
    """A retry runs only the processors an earlier attempt did not finish."""
    assert planned(claim(), settings()) == Run(("a", "b"), None, 1)
    assert planned(claim(attempts=1, done=("a",)), settings()) == Run(("b",), None, 2, ("a",))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Misfire.SKIP, Skip(NOW_MS)),  # the first occurrence not missed yet (now - grace .. now)
        (Misfire.FIRE_ONCE, Run(("a", "b"), NOW_MS + MINUTE_MS, 1)),  # one catch-up, then after now
        (Misfire.FIRE_ALL, Run(("a", "b"), NOW_MS - 9 * MINUTE_MS, 1)),  # each missed one in turn
    ],
)
def test_plan_applies_the_misfire_policy_to_a_missed_first_attempt(policy: Misfire, expected: Any) -> None:
    """Ten minutes late, a minutely reminder is skipped, fired once, or fired with the next one still due."""
    assert planned(late_minutely(10), settings(misfire=policy.value)) == expected


def test_plan_takes_the_claims_own_misfire_policy_over_the_rules() -> None:
    """A reminder scheduled with its own misfire policy overrides its rule's."""
    c = replace(late_minutely(10), misfire=Misfire.SKIP)
    assert isinstance(planned(c, settings(misfire="fire_all")), Skip)


def test_plan_never_skips_within_the_grace_or_a_retry() -> None:
    """An occurrence within the grace, or one retried after failing, fires."""
    assert isinstance(planned(claim(schedule=Every(MINUTE_MS, NOW_MS - 10)), settings(misfire="skip")), Run)
    retried = replace(late_minutely(10), attempts=1, due_at_ms=NOW_MS - 5)
    assert planned(retried, settings(misfire="skip")) == Run(("a", "b"), NOW_MS + MINUTE_MS, 2)


def test_plan_defers_a_first_attempt_inside_quiet_hours() -> None:
    """Due 15:06 UTC inside 15:00-16:30 quiet hours, a first attempt waits until 16:30; a retry does not."""
    quiet = {"start": "15:00", "end": "16:30"}
    assert planned(claim(), settings(quiet_hours=quiet)) == Defer(
        NOW_MS + 83 * MINUTE_MS + 20_000, "quiet_hours"
    )
    assert isinstance(planned(claim(attempts=1), settings(quiet_hours=quiet)), Run)


def test_plan_reads_quiet_hours_in_the_payload_zone() -> None:
    """The payload's zone decides the window: 15:06 UTC is 00:06 in Tokyo, inside 23:00-07:00 there."""
    quiet = {"start": "23:00", "end": "07:00", "default_tz": "UTC"}
    tokyo = claim(payload_json='{"tz":"Asia/Tokyo"}')
    verdict = planned(tokyo, settings(quiet_hours=quiet))
    assert verdict == Defer(NOW_MS + (6 * 60 + 53) * MINUTE_MS + 20_000, "quiet_hours")
    assert isinstance(planned(claim(), settings(quiet_hours=quiet)), Run)


def ok(name: str) -> Outcome:
    """A processor that succeeded."""
    return Outcome(name, True)


def failed(name: str, **fields: Any) -> Outcome:
    """A processor that failed retryably (fields override)."""
    return Outcome(name, False, error="boom", **fields)


RUN = Run(("a", "b"), NOW_MS + MINUTE_MS, 1)


def test_judge_completes_when_every_processor_succeeded() -> None:
    """All outcomes ok (a skip counts as ok): complete, re-armed for the plan's next due time."""
    outcomes = (ok("a"), Outcome("b", True, skipped=True))
    assert judge(outcomes, RUN, NO_JITTER, NOW_MS) == Complete(NOW_MS + MINUTE_MS, outcomes)


def test_judge_defers_when_only_rate_limits_said_not_now() -> None:
    """Deferrals alone move the occurrence to the latest time asked for, without using an attempt."""
    outcomes = [ok("a"), failed("b", deferred=True, retry_after_s=2.5)]
    assert judge(outcomes, RUN, NO_JITTER, NOW_MS) == Defer(NOW_MS + 2500, "rate_limit", ("b",))


def test_judge_retries_with_backoff_keeping_what_finished() -> None:
    """A retryable failure comes back after the backoff; the processor that finished is kept as done."""
    verdict = judge([ok("a"), failed("b")], RUN, NO_JITTER, NOW_MS)
    assert verdict == Retry(NOW_MS + 1000, 1, "b: boom", ("a",), ("b",))


def test_judge_backoff_doubles_is_capped_and_floored_by_retry_after() -> None:
    """The delay doubles per attempt up to backoff_max; a longer Retry-After wins."""
    policy = RetrySettings(max_attempts=9, backoff="1s", backoff_max="5s", jitter=0)
    delays = [judge([failed("a")], Run(("a",), None, n), policy, NOW_MS) for n in (1, 2, 3, 4)]
    assert [v.at_ms - NOW_MS for v in delays if isinstance(v, Retry)] == [1000, 2000, 4000, 5000]
    slow = judge([failed("a", retry_after_s=30)], Run(("a",), None, 1), policy, NOW_MS)
    assert isinstance(slow, Retry)
    assert slow.at_ms == NOW_MS + 30_000


def test_judge_dead_letters_a_permanent_failure_or_the_last_attempt() -> None:
    """A permanent failure, or a failure on the policy's last attempt, dead-letters; the schedule goes on."""
    permanent = judge([ok("a"), failed("b", permanent=True)], RUN, NO_JITTER, NOW_MS)
    assert permanent == Dead("permanent_failure", "b: boom", ("a",), ("b",), NOW_MS + MINUTE_MS)
    last = judge([failed("a")], Run(("a",), None, 3, ("b",)), NO_JITTER, NOW_MS)
    assert last == Dead("attempts_exhausted", "a: boom", ("b",), ("a",), None)


def test_judge_counts_a_deferral_beside_a_failure_as_a_failure() -> None:
    """When one processor failed and another was only deferred, the attempt is retried."""
    verdict = judge([failed("a"), failed("b", deferred=True, retry_after_s=1)], RUN, NO_JITTER, NOW_MS)
    assert isinstance(verdict, Retry)
    assert verdict.failed == ("a", "b")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (SkipOccurrence("opted out"), Outcome("p", True, skipped=True, error="opted out")),
        (PermanentError("bad", code="21211"), Outcome("p", False, error="bad (code 21211)", permanent=True)),
        (
            Deferred("full", retry_after_s=2),
            Outcome("p", False, error="full", retry_after_s=2, deferred=True),
        ),
        (RetryableError("503", retry_after_s=1), Outcome("p", False, error="503", retry_after_s=1)),
        (TimeoutError(), Outcome("p", False, error="timed out after 2.5s")),
        (KeyError("x"), Outcome("p", False, error="KeyError: 'x'")),
    ],
)
def test_outcome_of_reads_a_failure_by_its_type(exc: Exception, expected: Outcome) -> None:
    """Skip, permanent, deferred, retryable, timeout and any other exception each mean what errors.py says."""
    assert outcome_of("p", exc, 2.5) == expected
