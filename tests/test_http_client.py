"""The shared HTTP client: connection slots per host, waited for outside the processor's timeout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reminderd.errors import RetryableError
from reminderd.processors.base import HttpClient
from reminderd.processors.budget import budget, not_counted
from tests.http_receiver import HttpReceiver, Reply


async def test_a_wait_for_a_connection_slot_is_not_counted_in_the_timeout() -> None:
    """Five 0.2 s calls through one slot all succeed under a 0.5 s budget that queueing would exceed."""
    with HttpReceiver(default=Reply(200, delay_s=0.2)) as receiver:
        async with HttpClient(1) as http:

            async def call() -> int:
                async with budget(0.5):
                    answer = await http.request("POST", receiver.url("/"), where="t", data=b"{}")
                return answer.status

            started = time.monotonic()
            assert await asyncio.gather(*(call() for _ in range(5))) == [200] * 5
        assert time.monotonic() - started >= 1.0  # they did queue: one at a time
        ports = {r.client_port for r in receiver.requests}
        assert len(ports) == 1  # one connection, reused


async def test_the_timeout_still_covers_the_request_once_it_has_a_slot() -> None:
    """A request slower than its budget times out even after it waited for its slot."""
    with HttpReceiver(default=Reply(200, delay_s=1.0)) as receiver:
        async with HttpClient(1) as http:
            with pytest.raises(TimeoutError):
                async with budget(0.3):
                    await http.request("POST", receiver.url("/"), where="t")


async def test_a_request_timeout_shorter_than_the_budget_still_ends_the_request() -> None:
    """Under a 5 s budget, a request's own 0.2 s timeout applies and names itself."""
    with HttpReceiver(default=Reply(200, delay_s=1.0)) as receiver:
        async with HttpClient(1) as http:
            with pytest.raises(RetryableError, match=r"^t: timed out after 0\.2s$"):
                async with budget(5.0):
                    await http.request("POST", receiver.url("/"), where="t", timeout_s=0.2)


async def test_not_counted_resumes_the_deadline_with_what_was_left() -> None:
    """Time inside not_counted is added back; time outside still counts."""
    loop = asyncio.get_running_loop()
    async with budget(0.5):
        await asyncio.sleep(0.2)
        async with not_counted():
            await asyncio.sleep(0.6)  # beyond the budget: not counted
        await asyncio.sleep(0.2)
    started = loop.time()
    with pytest.raises(TimeoutError):
        await _paused_then_slept(0.5, paused_s=0.1, slept_s=1.0)
    assert 0.55 <= loop.time() - started < 0.9


async def _paused_then_slept(budget_s: float, paused_s: float, slept_s: float) -> None:
    async with budget(budget_s):
        async with not_counted():
            await asyncio.sleep(paused_s)
        await asyncio.sleep(slept_s)


async def test_a_transport_error_is_retryable_and_names_the_place() -> None:
    """A refused connection raises RetryableError naming ``where`` and the error's type only."""
    from tests.redis_server import free_port

    async with HttpClient(4) as http:
        with pytest.raises(RetryableError, match=r"^hook: request failed \(ClientConnectorError\)$"):
            await http.request("GET", f"http://127.0.0.1:{free_port()}/", where="hook")


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    """A request cancelled while it waits for the one slot neither takes nor loses it."""
    with HttpReceiver(default=Reply(200, delay_s=0.3)) as receiver:
        async with HttpClient(1) as http:
            first = asyncio.ensure_future(http.request("GET", receiver.url("/"), where="t"))
            await asyncio.sleep(0.05)
            waiting = asyncio.ensure_future(http.request("GET", receiver.url("/"), where="t"))
            await asyncio.sleep(0.05)
            assert http.queued == 1
            waiting.cancel()
            assert (await first).status == 200
            assert (await http.request("GET", receiver.url("/"), where="t")).status == 200
            assert http.queued == 0
        assert len(receiver.requests) == 2


def test_a_daemon_whose_processors_send_no_http_never_loads_aiohttp(tmp_path: Path) -> None:
    """The CLI, the daemon and its log and stream processors start without importing aiohttp."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "processors:\n  l: {type: log}\n  s: {type: stream, stream: out}\n"
        "rules:\n  send_message: {processors: [l, s]}\n"
    )
    probe = (
        "import sys, asyncio\n"
        "import reminderd.cli, reminderd.daemon.lifecycle\n"
        "from reminderd.config import load_config\n"
        "from reminderd.processors.base import HttpClient, ProcessorContext\n"
        "from reminderd.processors.registry import build_processors\n"
        "from reminderd.storage.names import Names\n"
        "import structlog\n"
        "async def main():\n"
        "    async with HttpClient(4) as http:\n"
        "        ctx = ProcessorContext(None, http, Names(), structlog.get_logger())\n"
        f"        build_processors(load_config({str(config)!r}).processors, ctx)\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


async def test_the_session_opens_at_the_first_request_and_closes_with_the_client() -> None:
    """Opened lazily inside ``async with``, gone after it; outside it the session is refused."""
    client = HttpClient(2)
    with pytest.raises(RuntimeError, match="not open"):
        _ = client.session
    with HttpReceiver(Reply(200)) as receiver:
        async with client:
            answer = await client.request("GET", receiver.url(), where="test")
            assert answer.status == 200
            session = client.session
    assert session.closed
    with pytest.raises(RuntimeError, match="not open"):
        _ = client.session
