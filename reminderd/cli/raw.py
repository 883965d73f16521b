"""``reminderd redis-cli CMD ARG...``: one raw command to the Redis the config names.

With the embedded Redis that is the daemon's server on its unix socket, which no other
tool reaches without being told where it is: this is the documented way to write a raw
trigger key (``reminderd redis-cli SET send_message-42-welcome 1 EX 86400``) on a host
where nothing but reminderd is installed. Replies print as ``redis-cli --raw`` prints
them (one value a line, nil as an empty line), so scripts can read them; an error reply
goes to stderr with exit 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from redis.exceptions import ResponseError

from reminderd.cli.context import Ctx
from reminderd.errors import InputError


def reply_lines(reply: Any) -> Iterator[str]:
    """The lines ``redis-cli --raw`` prints for ``reply`` (nested arrays flattened)."""
    if reply is None:
        yield ""
    elif isinstance(reply, bool):  # redis-py turns some integer replies into booleans
        yield "1" if reply else "0"
    elif isinstance(reply, list | tuple | set):
        for item in reply:
            yield from reply_lines(item)
    elif isinstance(reply, dict):
        for key, value in reply.items():
            yield from reply_lines(key)
            yield from reply_lines(value)
    elif isinstance(reply, bytes):
        yield reply.decode("utf-8", "replace")
    else:
        yield str(reply).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _as_sent(response: Any, **kwargs: Any) -> Any:
    return response


async def cmd_redis_cli(ctx: Ctx) -> int:
    """Send the command, print the reply."""
    argv: list[str] = list(ctx.args.argv)
    if not argv:
        raise InputError(
            "give a Redis command, e.g. reminderd redis-cli SET send_message-42-welcome 1 EX 86400"
        )
    # The reply as the server sent it: redis-py's parser would turn ``OK`` into True.
    ctx.client.set_response_callback(argv[0], _as_sent)
    try:
        reply = await ctx.client.execute_command(*argv)  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        raise InputError(f"(error) {exc}") from None
    print("\n".join(reply_lines(reply)))
    return 0
