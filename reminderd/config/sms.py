"""Settings of the ``sms`` processor (Twilio-compatible or generic HTTP gateway)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SmsSettings(BaseModel):
    """Placeholder until the SMS processor lands; every field is validated there."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: Literal["sms"]
    timeout_ms: int | None = Field(None, alias="timeout")
