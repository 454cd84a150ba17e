"""The one place request bodies are decoded: every JSON route's `data` passes through here.

Litestar would read any body as JSON whatever its Content-Type, and convert it leniently (a number
becomes a datetime, `"1"` an integer). Here a body is read only when it says it is JSON
(application/json or application/*+json, UTF-8; anything else, or no Content-Type, is 415), then
decoded strictly straight into the handler's declared type, so errors name the public field
(`$.from`, not the Python attribute). Invalid UTF-8, nesting deeper than the API needs, NUL
characters (PostgreSQL cannot store them), integers beyond int64 and instants outside the supported
calendar are refused here too, before any handler or database sees them; instants given with an
offset are moved to UTC here, the one door they come in by.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException, InternalServerException
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Empty

from api.errors import InputRejected
from api.input_rules import decoded_problem, is_json_media_type, nul_field, utc_instants
from api.raw_headers import header
from domain.errors import InvalidInput

__all__ = ["StrictRequest", "decode_json_body"]


@cache
def _decoder(data_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(data_type, strict=True)


def _data_type(handler: HTTPRouteHandler) -> Any:
    field = handler.parsed_fn_signature.parameters.get("data")
    return field.annotation if field is not None else Any


def decode_json_body(body: bytes, content_type: str, data_type: Any) -> Any:
    """The body decoded into data_type, or a 4xx naming what is wrong and where."""
    if not is_json_media_type(content_type):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"send the body as application/json (UTF-8), not {content_type or 'without a Content-Type'}",
        )
    try:
        # Every byte must be UTF-8, also in members the type ignores (msgspec skips them unread).
        body.decode("utf-8")
        if field := nul_field(body):
            raise InputRejected("nul_character", field, "the NUL character (U+0000) is not allowed in text")
        value = _decoder(data_type).decode(body)
    except UnicodeDecodeError:
        raise InputRejected("invalid_utf8", "body", "the body is not valid UTF-8") from None
    except RecursionError:
        raise InputRejected("nesting_too_deep", "body", "the body is nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise InputRejected.from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        raise InputRejected("malformed_body", "body", f"the body is not valid JSON: {exc}") from None
    if found := decoded_problem(value):
        code, field, reason = found
        if code == "nesting_too_deep":
            raise InputRejected(code, field, reason)
        raise InvalidInput(code, reason, field=field)
    return utc_instants(value)


class StrictRequest(Request[Any, Any, Any]):
    """Litestar's request, with `json()` (what fills a handler's `data`) decoding as above, and a
    body cut short by the client's going away answered as the client's fault, not a 500.

    The two headers a body needs are read straight from the scope: Litestar's header map, built
    for them, cost more than reading and decoding a booking's body."""

    @property
    def content_length(self) -> int | None:
        value = header(self.scope, b"content-length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            raise ClientException(f"Invalid content-length: {value!r}") from None

    async def body(self) -> bytes:
        try:
            return await super().body()
        except InternalServerException as exc:
            if "disconnected" not in str(exc.detail):
                raise
            raise InputRejected("body_incomplete", "body", "the connection closed before the whole body") from None

    async def json(self) -> Any:
        state = self._connection_state
        if state.json is Empty:
            body = await self.body()
            content_type = header(self.scope, b"content-type") or ""
            state.json = decode_json_body(body, content_type, _data_type(self.route_handler))
        return state.json
