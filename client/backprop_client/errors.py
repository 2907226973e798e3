"""``ApiError``: a 4xx or 5xx answer, read from the service's error envelope."""

from typing import Any

import requests


class ApiError(Exception):
    """An answer that is not a success: ``status``, ``code``, ``message`` and ``details``
    (field path -> messages) as the service sent them."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, list[str]] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(status, code, message, self.details)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self._what()}"

    def _what(self) -> str:
        """Every field path with its messages, or the message when no field is named."""
        if not self.details:
            return " ".join(self.message.split())
        return "; ".join(
            f"{field}: {'; '.join(messages)}" for field, messages in self.details.items()
        )

    @classmethod
    def from_response(cls, response: requests.Response) -> "ApiError":
        """From ``{"error": {"code", "message", "details"}}`` (/v1), ``{"error": "..."}`` (/v2)
        or, from something in front of the service, any other body."""
        fallback = (response.reason or "error").lower().replace(" ", "_")
        error = _json_body(response).get("error")
        if isinstance(error, dict):
            return cls(
                response.status_code,
                str(error.get("code") or fallback),
                str(error.get("message") or ""),
                _details(error.get("details")),
            )
        message = error if isinstance(error, str) else response.text[:500]
        return cls(response.status_code, fallback, message)

    @classmethod
    def from_operation(cls, error: dict[str, Any]) -> "ApiError":
        """From a failed operation's ``error``: the envelope with its HTTP ``status``."""
        return cls(
            int(error["status"]),
            str(error.get("code") or "error"),
            str(error.get("message") or ""),
            _details(error.get("details")),
        )


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _details(details: Any) -> dict[str, list[str]]:
    if not isinstance(details, dict):
        return {}
    return {
        str(field): [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
        for field, messages in details.items()
    }
