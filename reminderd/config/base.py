"""What every settings section shares: the strict base model and the common field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from reminderd.core.durations import parse_duration_ms
from reminderd.core.zones import check_zone_name


class Strict(BaseModel):
    """Base of every settings model: frozen, unknown keys forbidden."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# Checked when the config loads, so a misspelt zone fails there, not at each reminder.
ZoneName = Annotated[str, AfterValidator(check_zone_name)]
TimeoutMs = Annotated[int | None, BeforeValidator(lambda v: None if v is None else parse_duration_ms(v))]


def _not_bool(value: object) -> object:
    """Pydantic would take ``true`` as 1; a boolean where a number belongs is a typo."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
