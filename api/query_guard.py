"""The one place the request line and headers are checked, before any handler reads them.

Every route passes through here: query parameters, path segments and headers must be valid UTF-8
without NUL (PostgreSQL cannot store it), query values are at most MAX_QUERY_LENGTH characters,
typed query parameters are read strictly, and a parameter that takes one value is given once.
Litestar converts query values leniently, so `to=0.5` would become 1970-01-01T00:00:00.5Z and
`limit=9223372036854775808` an integer no database column holds: an integer parameter must fit
int64, an instant must be written as an RFC 3339 instant with a UTC offset and a date as a date,
both within the supported calendar (api/input_rules.py).
"""

from __future__ import annotations

import re
import typing
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

import msgspec
from litestar.enums import ParamType, ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.params import ParameterKwarg
from litestar.types import ASGIApp, Receive, Scope, Send

from api.errors import InputRejected
from api.input_rules import INT64_MAX, INT64_MIN, calendar_problem
from domain.errors import InvalidInput

__all__ = ["MAX_QUERY_LENGTH", "InputGuardMiddleware", "query_kinds"]

MAX_QUERY_LENGTH = 1000
Kind = Literal["int", "datetime", "date"]
_RESERVED = {"request", "socket", "state", "scope", "headers", "cookies", "query", "body", "data"}
_PATH_PARAM = re.compile(r"{(\w+):")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_EXAMPLES: dict[Kind, str] = {
    "datetime": "an instant such as 2026-12-01T02:00:00Z",
    "date": "a date such as 2026-12-01",
}


def _leaves(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        return _leaves(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    return set().union(*(_leaves(a) for a in args))


def _repeatable(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return _repeatable(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return any(_repeatable(a) for a in typing.get_args(annotation))


def query_kinds(handler: HTTPRouteHandler) -> dict[str, tuple[Kind | None, bool]]:
    """Public query parameter name -> (the kind of strict check it gets, whether it may repeat)."""
    path_params = {name for path in handler.paths for name in _PATH_PARAM.findall(path)}
    skip = _RESERVED | path_params | set(handler.resolve_dependencies())
    kinds: dict[str, tuple[Kind | None, bool]] = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if name in skip or (isinstance(kwarg, ParameterKwarg) and kwarg.param_type != ParamType.QUERY):
            continue
        public = (kwarg.query or kwarg.name or name) if isinstance(kwarg, ParameterKwarg) else name
        leaves = _leaves(field.annotation)
        kind: Kind | None = None
        if datetime in leaves:
            kind = "datetime"
        elif date in leaves:
            kind = "date"
        elif int in leaves:
            kind = "int"
        kinds[public] = (kind, _repeatable(field.annotation))
    return kinds


def _text(raw: bytes, field: str, source: str) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InputRejected("invalid_utf8", field, "not valid UTF-8", source) from None
    if "\x00" in text:
        raise InputRejected("nul_character", field, "the NUL character (U+0000) is not allowed", source)
    return text


def _check_value(name: str, value: str, kind: Kind | None) -> None:
    if len(value) > MAX_QUERY_LENGTH:
        raise InputRejected("invalid_input", name, f"at most {MAX_QUERY_LENGTH} characters", "query")
    if kind == "int":
        if _INTEGER.fullmatch(value) and not INT64_MIN <= int(value) <= INT64_MAX:
            raise InvalidInput("out_of_range", "integers are 64-bit", field=name)
        return  # anything else that is not an integer: Litestar's own conversion names it
    if kind is None or not value:
        return
    try:
        moment = msgspec.convert(value, datetime if kind == "datetime" else date, strict=True)
    except msgspec.ValidationError:
        raise InputRejected("invalid_input", name, f"expected {_EXAMPLES[kind]}", "query") from None
    if problem := calendar_problem(moment):
        raise InvalidInput(problem[0], problem[1], field=name)


class InputGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._kinds: dict[int, dict[str, tuple[Kind | None, bool]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            self._check(scope)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        for key, value in scope["headers"]:
            if b"\x00" in value:
                raise InputRejected("nul_character", key.decode("latin-1"), "NUL is not allowed", "header")
        path_params: dict[str, Any] = scope.get("path_params") or {}
        for name, value in path_params.items():
            if isinstance(value, str) and "\x00" in value:
                raise InputRejected("nul_character", name, "the NUL character (U+0000) is not allowed", "path")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        _text(raw_path.partition(b"?")[0], "path", "path")  # some servers leave the query in raw_path
        handler = scope.get("route_handler")
        kinds: dict[str, tuple[Kind | None, bool]] = {}
        if isinstance(handler, HTTPRouteHandler):
            # Once per route (one without query parameters has an empty table: not "missing").
            cached = self._kinds.get(id(handler))
            if cached is None:
                cached = self._kinds[id(handler)] = query_kinds(handler)
            kinds = cached
        seen: set[str] = set()
        for pair in scope["query_string"].split(b"&"):
            if not pair:
                continue
            raw_name, _, raw_value = pair.partition(b"=")
            name = _text(raw_name.replace(b"+", b" "), "query", "query")
            kind, repeatable = kinds.get(name, (None, True))
            if name in seen and not repeatable:  # which one was meant? Litestar would keep the last
                raise InputRejected("invalid_input", name, "give this parameter once", "query")
            seen.add(name)
            _check_value(name, _text(raw_value.replace(b"+", b" "), name, "query"), kind)
