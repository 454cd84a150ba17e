"""SMART system scopes, in both syntaxes: v1 `system/Patient.read` (or `.*`) and v2
`system/Patient.rs` (any of c r u d s, in that order). Only reading is ever granted here: a
backend client exports and reads, it never writes.

A scope grants a resource type (or `*`, every type); a granted set of scopes answers which types
a client may read (`readable`)."""

from __future__ import annotations

import re

from domain.errors import InvalidInput

_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)")


class Scope:
    """One parsed scope; `text` is kept as written, to grant back exactly what was asked."""

    __slots__ = ("resource_type", "text")

    def __init__(self, text: str, resource_type: str) -> None:
        self.text = text
        self.resource_type = resource_type


def parse(text: str) -> Scope:
    """A read scope, or invalid_scope: writes (v1 `write`, v2 c/u/d) are never granted."""
    match = _SCOPE.fullmatch(text)
    if match is None or match[2] == "":
        raise InvalidInput("invalid_scope", f"{text!r} is not a SMART system scope (system/Type.read, system/Type.rs)")
    permissions = match[2]
    if permissions == "read":
        return Scope(text, match[1])
    if permissions in ("write", "*") or any(p in permissions for p in "cud"):
        raise InvalidInput("invalid_scope", f"{text!r} asks to write: this server grants reading only")
    if "r" not in permissions:
        raise InvalidInput("invalid_scope", f"{text!r} does not grant reading (it needs r)")
    return Scope(text, match[1])


def parse_all(texts: str | list[str]) -> list[Scope]:
    """Space-separated scopes (as OAuth sends them) or a list; at least one."""
    items = texts.split() if isinstance(texts, str) else texts
    if not items:
        raise InvalidInput("invalid_scope", "ask for at least one scope, e.g. system/*.read")
    return [parse(item) for item in items]


def covers(granted: list[Scope], wanted: Scope) -> bool:
    """A wanted scope is within the granted ones when one of them names its type or every type."""
    return any(g.resource_type in ("*", wanted.resource_type) for g in granted)


def readable(granted: list[Scope] | tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """Of the `known` types, those the scopes let a client read, in the order of `known`."""
    scopes = [parse(s) for s in granted] if isinstance(granted, tuple) else granted
    types = {s.resource_type for s in scopes}
    return known if "*" in types else tuple(t for t in known if t in types)
