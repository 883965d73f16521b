"""The subscriber: key events and wake-ups, read fast and left as hints for intake.

It never processes anything itself, so a burst of expirations cannot back up into
Redis's pubsub output buffer and get this connection cut. redis-py re-subscribes
silently after a dropped connection; a second confirmation for a channel is how we
notice, and every re-subscription asks for an immediate sweep and a full adoption pass
(events may have been lost while the connection was down). Everything it learns goes
into ``Hints``.

It listens on ``__keyevent@<db>__:expired`` and, with ``daemon.raw_key_events``, on the
keyspace channels of the rule prefixes (``__keyspace@<db>__:<prefix>-*``, flags K and g):
Redis filters those by prefix, so the daemon hears only of trigger keys, and each message
names the event: ``expire`` (a key written with a TTL, or its TTL moved) and ``del`` are
taken; the rest (the same expiry again, renames) are ignored.

On Redis Cluster each primary publishes its own keys' events only, and the topology
watcher (``reminderd.pipeline.cluster_watch``) runs one ``Subscriber`` per primary: it sets
``node`` (its address, for logs and metrics), ``prepare`` (re-apply the notify flags on that
node before every subscription) and ``on_gap`` / ``on_disconnect`` (a gap on that node, a
connection lost: the watcher decides what follows) after construction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from reminderd.core.trigger_keys import Rejection, parse_key
from reminderd.pipeline.events import trigger_rule
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.runtime import Context
from reminderd.storage.names import expired_channel, keyspace_prefix, trigger_pattern

log = structlog.get_logger("reminderd.pipeline.subscriber")
_TAKEN = frozenset(("expire", "del"))  # the keyspace events read (the rest: see the docstring)


class Subscriber:
    """Subscribes to the key events of the rule prefixes and the namespace's wake channel."""

    def __init__(self, client: aioredis.Redis, db: int, ctx: Context, hints: Hints) -> None:
        self.client = client
        self.channel = expired_channel(db)
        self.keyspace = keyspace_prefix(db)
        self.names = ctx.store.names
        self.ctx = ctx
        self.hints = hints
        self.subscribed = asyncio.Event()
        self.subscribed_once = False
        self.canaries: dict[str, asyncio.Future[None]] = {}
        self._logged_reasons: set[str] = set()
        self._internal = self.names.namespace + ":"
        self.node: str | None = None  # on Cluster: the primary's address
        self.prepare: Callable[[], Awaitable[None]] | None = None  # before every subscription
        self.on_gap: Callable[[], None] | None = None  # instead of Hints.new_connection
        self.on_disconnect: Callable[[], None] | None = None

    async def run(self) -> None:
        """Listen forever, reconnecting with backoff."""
        delay_s = 0.1
        while True:
            try:
                if self.prepare is not None:
                    await self.prepare()
                await self._listen()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self._set_connected(False)
                if self.on_disconnect is not None:
                    self.on_disconnect()
                log.warning(
                    "redis.subscriber_disconnected", error=str(exc), retry_in_s=delay_s, node=self.node
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            else:
                delay_s = 0.1

    def _patterns(self) -> list[str]:
        """The keyspace patterns of every rule prefix's trigger keys (none without raw-key events)."""
        if not self.ctx.settings.daemon.raw_key_events:
            return []
        return [self.keyspace + trigger_pattern(p) for p in self.ctx.settings.prefixes]

    async def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=False)
        confirmed: set[str] = set()
        patterns = self._patterns()
        expected = {self.names.wake, self.channel, *patterns}
        try:
            if patterns:
                await pubsub.psubscribe(*patterns)
            await pubsub.subscribe(*(expected - set(patterns)))
            while True:
                msg = await pubsub.get_message(timeout=None)
                if msg is not None:
                    self._dispatch(msg, confirmed, expected)
                self._on_replies(_buffered(pubsub), confirmed, expected)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, msg: dict[str, Any], confirmed: set[str], expected: set[str]) -> None:
        kind, channel = msg["type"], msg["channel"]
        if kind == "pmessage":
            self._on_key_event(channel[len(self.keyspace) :], msg["data"])
        elif kind in ("subscribe", "psubscribe"):
            self._on_subscribe(channel, confirmed, expected)
        elif kind == "message":
            if channel == self.channel:
                self._on_expired(msg["data"])
            elif channel == self.names.wake:
                self.hints.due_at(_int_or_none(msg["data"]))

    def _on_replies(self, replies: Iterator[list[Any]], confirmed: set[str], expected: set[str]) -> None:
        """Raw replies read from the socket: key events straight to their handlers (a burst
        of raw keys brings two per key, by the hundred thousand), expired keys queued in one
        go, anything else in ``get_message``'s shape."""
        expired: list[str] = []
        for reply in replies:
            kind = reply[0]
            if kind == "message" and reply[1] == self.channel:
                expired.append(reply[2])
            elif kind == "pmessage":
                if reply[3] in _TAKEN:  # a raw key's expiry also comes here: read on the expired channel
                    self._on_key_event(reply[2][len(self.keyspace) :], reply[3])
            else:
                self._dispatch(_as_message(reply), confirmed, expected)
        if expired:
            self._on_expired_keys(expired)

    def _on_key_event(self, key: str, event: str) -> None:
        # An expiry comes through the expired channel, which works with the flags Ex alone
        # (where CONFIG is refused and K was never set, the keyspace channels stay silent).
        if event == "expire":
            # A name that is no trigger key is counted and logged once, on its expired event.
            if trigger_rule(key, self.ctx.settings.prefixes):
                self.hints.written.add(key)
        elif event == "del":
            self.hints.deleted.add(key)  # only a raw record's key is looked at; no parse needed

    def _on_subscribe(self, channel: str, confirmed: set[str], expected: set[str]) -> None:
        if channel in confirmed:
            log.warning("redis.resubscribed", channel=channel)
            if channel != self.names.wake:
                self._gap()
            return
        confirmed.add(channel)
        if confirmed >= expected:
            if self.subscribed_once:  # a new subscription after a lost one: events may be lost
                self._gap()
            self.subscribed_once = True
            self.subscribed.set()
            self._set_connected(True)
            log.info("redis.subscribed", channels=sorted(expected), node=self.node)

    def _gap(self) -> None:
        """Events may have been lost: tell the watcher of this node, or the daemon."""
        if self.on_gap is not None:
            self.on_gap()
        else:
            self.hints.new_connection()

    def _set_connected(self, connected: bool) -> None:
        if self.node is None:
            self.ctx.metrics.set_subscriber_connected(connected)
        else:
            self.ctx.metrics.set_node_subscriber_connected(self.node, connected)

    def _on_expired(self, key: str) -> None:
        self._on_expired_keys([key])

    def _on_expired_keys(self, keys: list[str]) -> None:
        """Queue the trigger keys of expired events (a raw key claimed here: not even parsed)."""
        internal, in_flight = self._internal, self.hints.in_flight
        fresh = []
        for key in keys:
            if key.startswith(internal):
                fut = self.canaries.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif not in_flight(key) and self._trigger(key):
                fresh.append(key)
        self.hints.keys_expired(fresh)

    def _trigger(self, key: str) -> bool:
        """Whether ``key`` is a trigger key (a rejection is counted, and logged as _reject says)."""
        if trigger_rule(key, self.ctx.settings.prefixes):
            return True
        parsed = parse_key(key, self.ctx.settings.prefixes)
        if isinstance(parsed, Rejection):
            self._reject(parsed)
            return False
        return True

    def _reject(self, rejection: Rejection) -> None:
        no_rule = rejection.reason == "matches no configured rule prefix"
        self.ctx.metrics.rejected_key("no_rule" if no_rule else "malformed")
        if no_rule:
            # Other applications' keys expire in the same database: count, log the first only.
            if "no_rule" not in self._logged_reasons:
                self._logged_reasons.add("no_rule")
                log.info(
                    "key.ignored", key=_printable(rejection.name), reason=rejection.reason, note="logged once"
                )
            return
        log.warning("key.rejected", key=_printable(rejection.name), reason=rejection.reason)

    def expect_canary(self, key: str) -> asyncio.Future[None]:
        """A future resolved when the expired event of canary ``key`` arrives."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.canaries[key] = fut
        return fut


def _buffered(pubsub: PubSub) -> Iterator[list[Any]]:
    """The replies already read from the socket, parsed without awaiting.

    A burst of key events arrives by the thousand; ``get_message`` costs tens of
    microseconds of redis-py per message (retry wrapper, push handler, a logger lookup),
    while every read from the socket brings up to 64 kB of messages. Those are taken here
    straight from the hiredis reader (``redis[hiredis]`` is a dependency); without it,
    nothing is, and ``get_message`` reads them one by one.
    """
    reader = getattr(getattr(pubsub.connection, "_parser", None), "_reader", None)
    if reader is None:
        return
    while isinstance(reply := reader.gets(), list):
        yield reply


def _as_message(reply: list[Any]) -> dict[str, Any]:
    """A raw pub/sub reply in ``get_message``'s shape (``pmessage``: pattern, channel, data)."""
    if reply[0] == "pmessage":
        return {"type": "pmessage", "pattern": reply[1], "channel": reply[2], "data": reply[3]}
    return {"type": reply[0], "channel": reply[1], "data": reply[2] if len(reply) > 2 else None}


def _printable(name: str) -> str:
    """A key name fit for a JSON log line.

    Names arrive decoded with ``surrogateescape``; the lone surrogates that stand for
    bytes that are not UTF-8 cannot be encoded, and a log line that fails to render
    would take the subscriber (and the daemon) down. They are shown as ``\\xff``.
    """
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return ascii(name)


def _int_or_none(data: str) -> int | None:
    try:
        return int(data)
    except (TypeError, ValueError):
        return None
