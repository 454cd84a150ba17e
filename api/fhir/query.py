"""A FHIR search request read against the parameter table (api/fhir/params.py): each declared
parameter parsed into the engine's criteria with FHIR's semantics, the result parameters (_count,
_sort, _total, _summary, _elements, _include, _revinclude) checked, and the rest dropped.

FHIR's rule for what a server does not support: under `Prefer: handling=strict` a 400
OperationOutcome; otherwise it is ignored and left out of the self link, so the client sees what
was applied. A declared parameter whose value does not parse is always a 400: a search never
silently widens to every row.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import msgspec

from api.errors import InputRejected
from api.fhir.params import TYPES, Param, SearchType
from api.input_rules import EARLIEST, LATEST
from domain.errors import InvalidInput
from domain.identifiers import systems
from domain.name_fold import fold
from domain.phone import normalize
from domain.search.engine import (
    Comparator,
    Criterion,
    DateIs,
    Id,
    IdIs,
    Key,
    Missing,
    Moment,
    Ref,
    RefIs,
    Spec,
    Text,
    TextIs,
    Token,
    TokenIs,
)

Total = Literal["none", "estimate", "accurate"]
_COMPARATORS = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_UNSUPPORTED_PREFIXES = ("ap",)
_DATE = re.compile(
    r"(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})(?:T(?P<H>[0-9]{2}):(?P<M>[0-9]{2})"
    r"(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]{1,6}))?)?(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_ELEMENT = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]+")
_CONTROL = {"_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude", "_cursor", "_format"}
_FORMATS = ("json", "application/json", "application/fhir+json")
# Searching a type's every row costs no more than a page: a revinclude brings at most this many.
REVINCLUDE_LIMIT = 1000


@dataclass(frozen=True)
class Link:
    """An _include (`param` of the searched type) or _revinclude (`param` of `source`)."""

    source: SearchType
    param: Param
    target: str | None  # Source:param:Target narrows the included type


@dataclass
class Query:
    type: SearchType
    criteria: list[list[Criterion]] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # what the self link shows
    pins: dict[str, object] = field(default_factory=dict)  # what a finder is asked about directly
    count: int = 0
    order: list[Key] = field(default_factory=list)
    total: Total | None = None
    summary_count: bool = False
    elements: list[str] | None = None
    includes: list[Link] = field(default_factory=list)
    revincludes: list[Link] = field(default_factory=list)
    cursor: str | None = None
    include_errors: bool = False

    def spec(self, after: tuple[object, ...] | None = None, before: tuple[object, ...] | None = None) -> Spec:
        wants_total = self.summary_count or self.count == 0 or self.total in ("estimate", "accurate")
        return Spec(
            criteria=self.criteria, order=self.order, after=after, before=before,
            limit=0 if self.summary_count else self.count, total=wants_total and self.total != "none",
        )  # fmt: skip


def strict(prefer: str | None) -> bool:
    """`Prefer: handling=strict` (RFC 7240 preferences, comma or semicolon separated)."""
    return prefer is not None and any(
        p.strip().replace(" ", "").lower() == "handling=strict" for p in re.split(r"[,;]", prefer)
    )


def bad(name: str, message: str) -> InputRejected:
    return InputRejected("invalid_search_value", name, message, "query")


class _Refused(Exception):
    """A parameter, modifier, prefix or form this server does not support (strict: 400)."""

    def __init__(self, code: str, name: str, message: str) -> None:
        super().__init__(message)
        self.error = InputRejected(code, name, message, "query")


# --- values -------------------------------------------------------------------------------------


def _split(value: str, sep: str) -> list[str]:
    """Split on `sep` not escaped with a backslash (FHIR escapes \\, \\| \\$ and \\\\)."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char if char in ",|$\\" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current) + ("\\" if escaped else ""))
    return parts


def _escaped_split(value: str, sep: str) -> list[str]:
    """Split on unescaped `sep`, leaving the other escapes for a later split."""
    parts, current, i = [], "", 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            current += value[i : i + 2]
            i += 2
            continue
        if value[i] == sep:
            parts.append(current)
            current = ""
        else:
            current += value[i]
        i += 1
    return [*parts, current]


def _unescape(value: str) -> str:
    return "".join(_split(value, "\0"))


def date_range(name: str, text: str) -> tuple[datetime, datetime]:
    """The span a FHIR date/dateTime value stands for at its precision: [start, end)."""
    m = _DATE.fullmatch(text)
    if m is None:
        raise bad(name, "a date is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]")
    try:
        year, month, day = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
        hour, minute, second = int(m["H"] or 0), int(m["M"] or 0), int(m["S"] or 0)
        fraction = m["f"] or ""
        tz = UTC if m["tz"] in (None, "Z") else datetime.strptime(m["tz"].replace(":", ""), "%z").tzinfo
        start = datetime(year, month, day, hour, minute, second, int(fraction.ljust(6, "0")), tzinfo=tz)
    except ValueError:
        raise bad(name, f"{text} is not a date of the calendar") from None
    if not EARLIEST <= start.astimezone(UTC).date() <= LATEST:
        raise InputRejected("out_of_range", name, f"dates are between {EARLIEST} and {LATEST}", "query")
    if m["m"] is None:
        end = start.replace(year=year + 1)
    elif m["d"] is None:
        end = start.replace(year=year + month // 12, month=month % 12 + 1)
    elif m["H"] is None:
        end = start + timedelta(days=1)
    elif m["S"] is None:
        end = start + timedelta(minutes=1)
    else:
        end = start + timedelta(microseconds=10 ** (6 - len(fraction)))
    return start.astimezone(UTC), end.astimezone(UTC)


def _date(p: Param, value: str) -> Criterion:
    prefix = value[:2] if value[:2].isalpha() else "eq"
    if prefix in _UNSUPPORTED_PREFIXES:
        raise _Refused("unsupported_search_prefix", p.name, f"the prefix {prefix} is not supported")
    if prefix not in _COMPARATORS:
        raise bad(p.name, f"a date prefix is one of {', '.join(_COMPARATORS)}")
    start, end = date_range(p.name, value[2:] if value[:2].isalpha() else value)
    assert isinstance(p.field, Moment)
    return DateIs(p.field, cast(Comparator, prefix), start, end)


def _token(p: Param, value: str, negate: bool, region: str) -> Criterion:
    assert isinstance(p.field, Token)
    parts = [_unescape(s) for s in _escaped_split(value, "|")]
    if len(parts) > 2:
        raise bad(p.name, "a token is [system]|[code] or code")
    system: str | None = None
    code: str | None = parts[0]
    no_system = False
    if len(parts) == 1:
        pass
    else:
        system, code = parts[0] or None, parts[1] or None
        no_system = system is None
        if system is None and code is None:
            raise bad(p.name, "a token names a system, a code or both")
    if p.phone and code is not None:
        try:
            code = normalize(code, region)
        except InvalidInput as refused:
            raise bad(p.name, refused.detail) from None
    if p.identifier and system is not None and code is not None:
        code = systems.registry().normalise(system, code)
    return TokenIs(p.field, code, system, no_system, negate)


def _string(p: Param, value: str, modifier: str | None) -> Criterion:
    assert isinstance(p.field, Text)
    text = _unescape(value)
    if modifier == "exact":
        return TextIs(p.field, "exact", text)
    return TextIs(p.field, "contains" if modifier == "contains" else "starts", fold(text.strip()))


def reference_target(value: str, base: str) -> tuple[str | None, str]:
    """(type, id) of `id`, `Type/id`, `Type/id/_history/n` or this server's absolute URL; type
    '' for an absolute URL of another server (matches nothing)."""
    if "://" in value:
        prefix = base.rstrip("/") + "/fhir/"
        if not value.startswith(prefix):
            return "", value
        value = value.removeprefix(prefix)
    parts = value.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2 and _TYPE_NAME.fullmatch(parts[0]):
        return parts[0], parts[1]
    return "", value


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _reference(p: Param, value: str, type_modifier: str | None, base: str) -> list[Criterion]:
    assert isinstance(p.field, Ref)
    kind, ident = reference_target(_unescape(value), base)
    if not ident:
        raise bad(p.name, "a reference is {id}, Type/{id} or this server's URL of one")
    if kind is None:
        kinds = [type_modifier] if type_modifier else list(p.targets)
    elif type_modifier and kind != type_modifier:
        kinds = [""]
    else:
        kinds = [kind]
    return [RefIs(p.field, k, _uuid(ident)) for k in kinds]


def _id_value(p: Param, value: str) -> Criterion:
    assert isinstance(p.field, Id)
    if p.field.kind == "uuid":
        return IdIs(p.field, _uuid(value))
    if p.field.kind == "int":
        return IdIs(p.field, int(value) if value.isdigit() and len(value) < 19 else None)
    return IdIs(p.field, value)


_MODIFIERS = {"date": (), "token": ("not",), "string": ("exact", "contains"), "reference": ()}


def _parse(p: Param, modifier: str | None, raw: str, *, region: str, base: str) -> list[Criterion]:
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad(p.name, ":missing is true or false")
        return [Missing(p.field, raw == "true")]
    if modifier is not None and not (
        modifier in _MODIFIERS[p.type] or (p.type == "reference" and modifier in p.targets)
    ):
        raise _Refused("unsupported_search_modifier", p.name, f"{p.name} has no :{modifier} modifier here")
    values = _escaped_split(raw, ",")
    if p.type == "date" and modifier is None:
        return [_date(p, v) for v in values]
    if isinstance(p.field, Id):
        return [_id_value(p, _unescape(v)) for v in values]
    if p.type == "token":
        return [_token(p, v, modifier == "not", region) for v in values]
    if p.type == "string":
        return [_string(p, v, modifier) for v in values]
    return [c for v in values for c in _reference(p, v, modifier, base)]


# --- the request --------------------------------------------------------------------------------


def _links(name: str, values: str, t: SearchType, rev: bool) -> list[Link]:
    allowed = t.revincludes if rev else t.includes
    found = []
    for value in values.split(","):
        parts = value.split(":")
        if len(parts) not in (2, 3) or ":".join(parts[:2]) not in allowed:
            raise _Refused("unsupported_include", name, f"{name}={value} is not supported; see the CapabilityStatement")
        source = TYPES[parts[0]]
        param = source.by_param[parts[1]]
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in param.targets:
            raise bad(name, f"{parts[0]}:{parts[1]} refers to {', '.join(param.targets)}")
        found.append(Link(source, param, target))
    return found


def _control(q: Query, name: str, modifier: str | None, value: str) -> None:
    t = q.type
    if modifier is not None:
        raise _Refused("unsupported_search_modifier", name, f"{name} takes no modifier")
    if name == "_count":
        if not value.isdigit() or len(value) > 9:
            raise bad(name, "_count is a whole number")
        q.count = min(int(value), t.max_count)
    elif name == "_sort":
        keys: list[Key] = []
        for item in value.split(","):
            desc, pname = item.startswith("-"), item.removeprefix("-")
            param = t.by_param.get(pname)
            if param is None or param.sort is None:
                raise _Refused("unsupported_sort", name, f"{t.name} does not sort by {pname}")
            keys.append(param.key(desc))
        q.order = [*keys, *t.order]
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise bad(name, "_total is none, estimate or accurate")
        q.total = cast(Total, value)
    elif name == "_summary":
        if value in ("true", "text", "data"):
            raise _Refused("unsupported_summary", name, "_summary takes count or false here")
        if value not in ("count", "false"):
            raise bad(name, "_summary is true, text, data, count or false")
        q.summary_count = value == "count"
    elif name == "_elements":
        names = value.split(",")
        if not all(_ELEMENT.fullmatch(n) for n in names):
            raise bad(name, "_elements lists element names, e.g. id,status")
        q.elements = names
    elif name in ("_include", "_revinclude"):
        (q.revincludes if name == "_revinclude" else q.includes).extend(_links(name, value, t, name == "_revinclude"))
    elif name == "_format":
        if value not in _FORMATS:
            raise _Refused("unsupported_format", name, "only JSON is served")
    elif name == "_cursor":
        q.cursor = value
        return  # carried by next/previous links, never by self
    q.used.append((name, value))


def parse(t: SearchType, items: Iterable[tuple[str, str]], *, strict_handling: bool, region: str, base: str) -> Query:
    """The search a request asks for; see the module docstring for what is dropped or refused."""
    q = Query(t, count=t.count, order=list(t.order))
    once: set[str] = set()
    for key, value in items:
        name, _, modifier_text = key.partition(":")
        modifier = modifier_text or None
        if name in _CONTROL and name not in ("_include", "_revinclude"):
            if name in once:
                raise bad(name, f"give {name} once")
            once.add(name)
        try:
            if name in _CONTROL:
                if value != "":
                    _control(q, name, modifier, value)
                continue
            param = t.by_param.get(name)
            if param is None:
                raise _Refused("unknown_search_parameter", name, f"{t.name} has no search parameter {name}")
            if value == "":
                continue  # FHIR: an empty value is ignored
            if param.required:
                if modifier is not None:
                    raise _Refused("unsupported_search_modifier", name, f"{name} takes no modifier")
                if name in q.pins:
                    raise bad(name, f"give {name} once")
                q.pins[name] = _parse(param, None, value, region=region, base=base)
            else:
                group = _parse(param, modifier, value, region=region, base=base)
                q.criteria.append(group)
                q.include_errors |= param.reveals_errors
                _pin_patient(q, name, modifier, group)
        except _Refused as refused:
            if strict_handling:
                raise refused.error from None
            continue
        q.used.append((key, value))
    for param in t.params:
        if param.required and param.name not in q.pins:
            raise InputRejected("missing_field", param.name, "required query parameter", "query")
    return q


def _pin_patient(q: Query, name: str, modifier: str | None, group: list[Criterion]) -> None:
    """A search of one patient's record (patient=, subject=) is checked for that patient first."""
    if name in ("patient", "subject") and modifier in (None, "Patient") and len(group) == 1:
        [c] = group
        if isinstance(c, RefIs) and c.target == "Patient" and c.id is not None:
            q.pins.setdefault("patient", c.id)


# --- page cursors -------------------------------------------------------------------------------


def _signature(order: list[Key]) -> str:
    return hashlib.sha256("|".join(f"{k.expr}:{k.desc}" for k in order).encode()).hexdigest()[:12]


def encode_cursor(order: list[Key], keyset: tuple[object, ...], backwards: bool, phase: int = 0) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v for v in keyset]
    data = msgspec.json.encode({"o": _signature(order), "b": backwards, "k": values, "p": phase})
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(raw: str, *orders: list[Key]) -> tuple[tuple[object, ...], bool, int]:
    """(keyset, backwards, phase) of a cursor this server wrote; `orders` gives each phase's order
    (one for a search; $everything walks several lists). An empty keyset starts a phase."""
    invalid = InvalidInput("invalid_cursor", "use the next or previous link as given", field="_cursor")
    try:
        data = msgspec.json.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        phase = data.get("p", 0)
        if not isinstance(phase, int) or not 0 <= phase < len(orders):
            raise invalid
        order = orders[phase]
        if data["o"] != _signature(order) or len(data["k"]) not in (0, len(order)):
            raise invalid
        values: list[object] = []
        for key, value in zip(order, data["k"], strict=False):
            if key.kind == "instant":
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is None:
                    raise invalid
                values.append(moment)
            elif key.kind == "uuid":
                values.append(uuid.UUID(value))
            elif key.kind == "int":
                if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
                    raise invalid
                values.append(value)
            else:
                values.append(str(value))
        return tuple(values), bool(data["b"]), phase
    except (ValueError, TypeError, KeyError, AttributeError, msgspec.DecodeError):
        raise invalid from None
