"""Server-Sent Events as ``/v1/jobs/{id}/events`` sends them."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Event:
    """One event: ``type`` "epoch" (``data`` an epoch record, ``id`` its epoch number) or
    "status" (``data`` the job's status fields, ``id`` None)."""

    type: Literal["epoch", "status"]
    data: dict[str, Any]
    id: int | None = None


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """The events in the lines of an event stream; comments (``: keep-alive``) are skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            event_id = fields.get("id")
            yield Event(
                fields.get("event", "message"),  # type: ignore[arg-type]
                json.loads(fields["data"]),
                int(event_id) if event_id else None,
            )
        fields = {}
