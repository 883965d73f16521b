"""Who may reach the embedded server, and how: its unix socket, an optional TCP port, a password.

The socket (mode 700) is the only way in by default. ``redis.embedded.port`` adds a TCP
listener, on ``127.0.0.1`` unless ``redis.embedded.bind`` says otherwise, so other programs
on the host (``redis-cli -p PORT -a PASSWORD``) can write raw trigger keys; the config
loader refuses it without ``redis.password``. The password (for ``redis.username``, an ACL
user with every permission; else the default user) reaches the server on its standard
input as config lines, never on its command line, where ``ps`` would show it.
"""

from __future__ import annotations

from dataclasses import dataclass

from reminderd.config.model import RedisSettings


def _quoted(text: str) -> str:
    """``text`` as a double-quoted redis.conf string (backslashes, quotes, newlines escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class Access:
    """The embedded server's listeners and credentials."""

    port: int | None = None
    bind: str = "127.0.0.1"
    username: str | None = None
    password: str | None = None

    @classmethod
    def of(cls, settings: RedisSettings) -> Access:
        """What ``redis.embedded`` and ``redis.username``/``password`` ask for."""
        return cls(settings.embedded.port, settings.embedded.bind, settings.username, settings.password)

    def args(self) -> list[str]:
        """Command-line arguments: TCP off (``--port 0``), or the port on the bind address."""
        if self.port is None:
            return ["--port", "0"]
        return ["--port", str(self.port), "--bind", self.bind]

    def config_text(self) -> str | None:
        """redis.conf lines for the server's stdin, or None when no password is set."""
        if not self.password:
            return None
        secret = _quoted(f">{self.password}")
        if self.username:
            name = _quoted(self.username)
            return f"user default off\nuser {name} on {secret} ~* &* +@all\n"
        return f"requirepass {_quoted(self.password)}\n"

    def auth_command(self) -> bytes:
        """The RESP ``AUTH`` that a raw connection (orphan shutdown) sends first, or nothing."""
        if not self.password:
            return b""
        parts = [b"AUTH", *([self.username.encode()] if self.username else []), self.password.encode()]
        return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
