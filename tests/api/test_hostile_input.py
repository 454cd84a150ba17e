"""Hostile and odd input, swept over EVERY route, body field and query parameter of the app.

The routes and their request types are read from the app itself (handlers, msgspec type info,
the OpenAPI schema), so a route or field added later is swept too. Each case must answer 4xx
(never 500) and name the public field; every text field of every request body must be bounded.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import msgspec.inspect as mi
from litestar import Litestar
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth

Client = AsyncTestClient[Litestar]
_PARAM = re.compile(r"{(\w+):(\w+)}")


def concrete(path: str) -> str:
    """The route's path with its parameters filled (uuids: a random one; strings: a FHIR type)."""
    return _PARAM.sub(lambda m: str(uuid.uuid4()) if m[2] == "uuid" else "Observation", path)


@dataclass(frozen=True)
class BodyRoute:
    method: str
    path: str
    data_type: Any
    required: bool


def body_routes(app: Litestar) -> list[BodyRoute]:
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None:
                continue
            if getattr(data.kwarg_definition, "media_type", None) == RequestEncodingType.URL_ENCODED:
                continue  # a gateway's form callback answers in its own protocol (tests/sms/ussd)
            for method in sorted(handler.http_methods):
                found.append(BodyRoute(method, route.path, data.annotation, not data.is_optional))
    assert len(found) >= 25  # the sweep sees the whole API, not a corner of it
    return found


@dataclass(frozen=True)
class Leaf:
    path: str  # the public path, as errors name it: rules[0].start
    info: mi.Type
    steps: tuple[tuple[str, Any], ...]  # ("struct", StructType) / ("field", name) / ("list", None)


def leaves(info: mi.Type) -> Iterator[Leaf]:
    """Every scalar field reachable from a request type, with the steps that reach it."""

    def walk(t: mi.Type, path: str, steps: tuple[tuple[str, Any], ...], seen: frozenset[type]) -> Iterator[Leaf]:
        if isinstance(t, mi.Metadata):
            yield from walk(t.type, path, steps, seen)
        elif isinstance(t, mi.StructType):
            if t.cls in seen:
                return
            for f in t.fields:
                name = f.encode_name
                yield from walk(
                    f.type, f"{path}.{name}" if path else name, (*steps, ("struct", t), ("field", name)),
                    seen | {t.cls},
                )  # fmt: skip
        elif isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType):
            yield from walk(t.item_type, f"{path}[0]", (*steps, ("list", t)), seen)
        elif isinstance(t, mi.UnionType):
            for option in t.types:
                yield from walk(option, path, steps, seen)
        elif not isinstance(t, mi.NoneType):
            yield Leaf(path, t, steps)

    yield from walk(info, "", (), frozenset())


def sample(t: mi.Type) -> Any:
    """A valid value of t (required fields filled), to carry one hostile value elsewhere."""
    if isinstance(t, mi.Metadata):
        return sample(t.type)
    if isinstance(t, mi.StrType):
        return "x" * max(t.min_length or 1, 1)
    if isinstance(t, mi.IntType):
        return t.ge if t.ge is not None else 1
    if isinstance(t, mi.FloatType):
        return 1.0
    if isinstance(t, mi.BoolType):
        return False
    if isinstance(t, mi.UUIDType):
        return str(uuid.uuid4())
    if isinstance(t, mi.DateTimeType):
        return "2030-01-01T02:00:00Z"
    if isinstance(t, mi.DateType):
        return "2030-01-01"
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType):
        return [sample(t.item_type)] * (t.min_length or 0)
    if isinstance(t, mi.StructType):
        return _struct(t, skip=None)
    if isinstance(t, mi.UnionType):
        return sample(next(o for o in t.types if not isinstance(o, mi.NoneType)))
    return None


def _struct(t: mi.StructType, skip: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {t.tag_field: t.tag} if t.tag_field else {}
    for f in t.fields:
        if f.required and f.encode_name != skip:
            node[f.encode_name] = sample(f.type)
    return node


def build(leaf: Leaf, value: Any) -> Any:
    """A valid document of the request type but for `value` at the leaf."""
    doc: Any = value
    # Build from the leaf outwards: each step wraps what is below it.
    for index in range(len(leaf.steps) - 1, -1, -1):
        kind, arg = leaf.steps[index]
        if kind == "list":
            doc = [doc]
        elif kind == "field":
            struct = leaf.steps[index - 1][1]
            node = _struct(struct, skip=arg)
            node[arg] = doc
            doc = node
    return doc


def _field_of(response: httpx.Response) -> str | None:
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        expression = body["issue"][0].get("expression") or [None]
        return str(expression[0]) if expression[0] else None
    field = (body.get("errors") or [{}])[0].get("field")
    return str(field) if field is not None else None


def _code_of(response: httpx.Response) -> str | None:
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        return str(body["issue"][0]["details"]["coding"][0]["code"])
    return str(body.get("code"))


def _verdict(response: httpx.Response, field: str | None) -> str | None:
    """None when the answer is a 4xx naming `field`; otherwise what is wrong."""
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.text[:200]}"
    if field is not None and _field_of(response) != field:
        return f"field {_field_of(response)!r} instead of {field!r}: {response.text[:200]}"
    return None


BAD_INSTANTS: list[Any] = [
    0,
    0.5,
    "0.5",
    "2026-02-30T00:00:00Z",
    "0000-00-00T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00Z",
    "2030-01-01T02:00:00",  # no UTC offset
]
BAD_DATES: list[Any] = [0, "0.5", "2026-02-30", "0000-00-00", "9999-12-31", "0001-01-01"]
BAD_INTEGERS: list[Any] = [2**63, 2**64, -(2**63) - 1, 10**30]


def bad_values(info: mi.Type) -> list[tuple[Any, str]]:
    """(value, what it tries) for a leaf of this type."""
    if isinstance(info, mi.StrType):
        assert info.max_length is not None
        return [("x" * (info.max_length + 1), "too long"), ("a\x00b", "NUL")]
    if isinstance(info, mi.DateTimeType):
        return [(v, "instant") for v in BAD_INSTANTS]
    if isinstance(info, mi.DateType):
        return [(v, "date") for v in BAD_DATES]
    if isinstance(info, mi.IntType):
        return [(v, "integer") for v in BAD_INTEGERS]
    return []


def _unbounded_lists(leaf: Leaf) -> list[str]:
    return [leaf.path for kind, t in leaf.steps if kind == "list" and getattr(t, "max_length", None) is None]


async def test_every_text_field_and_list_of_every_request_body_is_bounded(app: Litestar) -> None:
    unbounded = {
        f"{r.method} {r.path}: {leaf.path}"
        for r in body_routes(app)
        for leaf in leaves(mi.type_info(r.data_type))
        if (isinstance(leaf.info, mi.StrType) and leaf.info.max_length is None) or _unbounded_lists(leaf)
    }
    assert sorted(unbounded) == []


async def test_every_body_field_refuses_hostile_values_naming_it(
    client: Client, app: Litestar, factory: Factory
) -> None:
    headers = auth(await factory.admin_token())
    failures = []
    swept = 0
    for route in body_routes(app):
        for leaf in leaves(mi.type_info(route.data_type)):
            for value, what in bad_values(leaf.info):
                doc = build(leaf, value)
                response = await client.request(
                    route.method, concrete(route.path), content=msgspec.json.encode(doc),
                    headers={**headers, "content-type": "application/json"},
                )  # fmt: skip
                swept += 1
                if problem := _verdict(response, leaf.path):
                    failures.append(f"{route.method} {route.path} {leaf.path} ({what} {str(value)[:30]}): {problem}")
    assert failures == []
    assert swept > 300


# (body, Content-Type, status, codes): a deep array where an object is expected is refused as the
# wrong type before its depth is reached; a deep object (members skipped unread) as too deep.
BAD_BODIES: list[tuple[bytes, str | None, int, str]] = [
    (b'{"x": "\xff\xfe"}', "application/json", 400, "invalid_utf8"),
    (b"\xc3\x28", "application/json", 400, "invalid_utf8"),
    (b"[" * 200_000 + b"]" * 200_000, "application/json", 400, "nesting_too_deep invalid_input"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json", 400, "nesting_too_deep"),
    (b'{"a": [', "application/json", 400, "malformed_body"),
    (b'{"a": "\\u0000"}', "application/json", 400, "nul_character"),
    (b'{"a\\u0000": 1}', "application/json", 400, "nul_character"),
    (b'{"a": "x\x00y"}', "application/json", 400, "malformed_body nul_character"),  # a raw NUL byte
    (b"{}", "text/plain", 415, "unsupported_media_type"),
    (b"{}", None, 415, "unsupported_media_type"),
    (b"a=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"\x80", "application/msgpack", 415, "unsupported_media_type"),
    (b"{}", "application/json; charset=latin-1", 415, "unsupported_media_type"),
]


async def test_every_json_route_refuses_what_is_not_utf8_json(client: Client, app: Litestar, factory: Factory) -> None:
    headers = auth(await factory.admin_token())
    failures = []
    for route in body_routes(app):
        url = concrete(route.path)
        for body, content_type, status, code in BAD_BODIES:
            sent = {**headers, **({"content-type": content_type} if content_type else {})}
            response = await client.request(route.method, url, content=body, headers=sent)
            answer = response.json()
            got = answer.get("code") or answer.get("issue", [{}])[0].get("details", {}).get("coding", [{}])[0].get(
                "code"
            )
            if response.status_code != status or got not in code.split():
                failures.append(
                    f"{route.method} {route.path} {body[:20]!r} {content_type}: {response.status_code} {got}"
                )
        if route.required:  # an empty or null body where one is required
            for body in (b"", b"null"):
                response = await client.request(
                    route.method, url, content=body, headers={**headers, "content-type": "application/json"}
                )
                if response.status_code != 400:
                    failures.append(f"{route.method} {route.path} body {body!r}: {response.status_code}")
        for accepted in ("application/json; charset=utf-8", "application/merge-patch+json", "application/fhir+json"):
            response = await client.request(
                route.method, url, content=b"{}", headers={**headers, "content-type": accepted}
            )
            if response.status_code in (415, 500):
                failures.append(f"{route.method} {route.path} {accepted}: {response.status_code}")
    assert failures == []


@dataclass(frozen=True)
class QueryParam:
    method: str
    path: str
    name: str
    schema: dict[str, Any]
    others_required: tuple[tuple[str, str], ...] = ()  # (name, a valid value) of the required others


def _valid(name: str, schema: dict[str, Any]) -> str:
    kinds = _kinds(schema)
    if "uuid" in kinds:
        return str(uuid.uuid4())
    if "date-time" in kinds:
        return "2030-01-02T02:00:00Z"
    if "date" in kinds:
        return "2030-01-02"
    if "integer" in kinds:
        return "1"
    return f"Schedule/{uuid.uuid4()}" if name == "schedule" else "x"


def query_params(app: Litestar) -> list[QueryParam]:
    schema = app.openapi_schema.to_schema()
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            params = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            for param in params:
                others = tuple(
                    (p["name"], _valid(p["name"], p.get("schema", {})))
                    for p in params
                    if p.get("required") and p["name"] != param["name"]
                )
                found.append(QueryParam(method.upper(), path, param["name"], param.get("schema", {}), others))
    assert len(found) >= 50
    return found


def _kinds(schema: dict[str, Any]) -> set[str]:
    options = [schema, *schema.get("oneOf", []), *schema.get("anyOf", []), schema.get("items", {})]
    kinds = set()
    for option in options:
        kinds.add(str(option.get("format", "")))
        kind = option.get("type", "")
        kinds.update(kind if isinstance(kind, list) else [kind])
    return kinds


def _url(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: "Observation" if m[1] == "resource_type" else str(uuid.uuid4()), path)


async def test_every_query_parameter_refuses_hostile_values_naming_it(
    client: Client, app: Litestar, factory: Factory
) -> None:
    headers = auth(await factory.admin_token())
    failures = []
    for param in query_params(app):
        url = _url(param.path)
        kinds = _kinds(param.schema)
        cases: list[tuple[str, str]] = [("a%00b", "NUL"), ("%FF", "invalid UTF-8"), ("x" * 1001, "too long")]
        if "array" not in kinds:  # a parameter that takes one value, given twice
            cases.append(
                (f"{_valid(param.name, param.schema)}&{param.name}={_valid(param.name, param.schema)}", "twice")
            )
        if "integer" in kinds:
            cases += [(str(v), "integer") for v in BAD_INTEGERS] + [("abc", "not an integer")]
        if "uuid" in kinds:
            cases += [("abc", "not a uuid")]
        if "date-time" in kinds:
            cases += [(str(v), "instant") for v in BAD_INSTANTS]
        if "date" in kinds:
            cases += [(str(v), "date") for v in BAD_DATES]
        for raw, what in cases:
            encoded = raw.replace("+", "%2B").replace(":", "%3A")  # `&` of the "twice" case stays
            others = "".join(f"&{name}={value}" for name, value in param.others_required)
            response = await client.request(param.method, f"{url}?{param.name}={encoded}{others}", headers=headers)
            if problem := _verdict(response, param.name):
                failures.append(f"{param.method} {param.path} ?{param.name}= ({what} {raw[:30]}): {problem}")
    assert failures == []


FHIR_DATES = [
    ("/fhir/Observation", "date"),
    ("/fhir/Observation", "_lastUpdated"),
    ("/fhir/Appointment", "date"),
    ("/fhir/Slot", "start"),
    ("/fhir/Patient", "birthdate"),
]


async def test_fhir_date_parameters_refuse_impossible_and_edge_dates(client: Client, factory: Factory) -> None:
    headers = auth(await factory.admin_token())
    failures = []
    required = {"/fhir/Observation": f"patient={uuid.uuid4()}", "/fhir/Slot": f"schedule=Schedule/{uuid.uuid4()}"}
    for path, name in FHIR_DATES:
        for value in ("2026-02-30", "0000-00-00", "9999-12-31", "ge9999-12-31T23:59:59Z", "0001-01-01", "0.5"):
            extra = required.get(path, "")
            response = await client.get(f"{path}?{extra}&{name}={value.replace('+', '%2B')}", headers=headers)
            if problem := _verdict(response, name):
                failures.append(f"{path}?{name}={value}: {problem}")
    assert failures == []


async def test_nul_in_headers_and_path_segments_is_refused(client: Client, app: Litestar, factory: Factory) -> None:
    headers = auth(await factory.admin_token())
    failures = []
    for param in [*query_params(app)[::3], QueryParam("GET", "/fhir/Provenance/{id}", "", {})]:
        url = _url(param.path)
        for name in ("x-client-channel", "idempotency-key", "if-match"):
            response = await client.request(param.method, url, headers={**headers, name: "a\x00b"})
            if problem := _verdict(response, name):
                failures.append(f"{param.method} {param.path} header {name}: {problem}")
    for path, field in (("/fhir/Provenance/a%00b", "provenance_id"), ("/fhir/Obser%00vation", "resource_type")):
        if problem := _verdict(await client.get(path, headers=headers), field):
            failures.append(f"{path}: {problem}")
    assert failures == []


async def test_cursors_beyond_their_types_are_refused(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    for since in (str(2**64), f"1.{2**63}", "²", "1.²", "-1", "1e3", "9" * 30):
        response = await client.get("/v1/sync", params={"since": since}, headers=scene.chw.headers)
        assert response.status_code == 422, (since, response.text)
        assert response.json()["code"] == "invalid_cursor"
        assert response.json()["errors"][0]["field"] == "since"
    far = ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00")
    for start in far:  # cursors this server never wrote, at the calendar's edge or without an offset
        raw = f"{start}|{uuid.uuid4()}".encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        response = await client.get("/v1/appointments", params={"cursor": cursor}, headers=scene.chw.headers)
        assert (response.status_code, response.json()["code"]) == (422, "invalid_cursor"), response.text
        response = await client.get(
            "/fhir/Appointment", params={"_cursor": f"{start}~{uuid.uuid4()}"}, headers=scene.chw.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["issue"][0]["expression"] == ["_cursor"]
    for if_match in ("²", str(2**31), str(2**63), "0"):
        sent = [(k.encode(), v.encode()) for k, v in {**scene.chw.headers, "if-match": if_match}.items()]
        response = await client.patch(f"/v1/patients/{scene.patient}", json={"sex": "male"}, headers=sent)
        assert response.status_code == 422, (if_match, response.text)
        assert response.json()["errors"][0]["field"] == "If-Match"


async def test_public_names_in_errors(client: Client, factory: Factory) -> None:
    headers = auth(await factory.admin_token())
    response = await client.get("/v1/appointments", params={"from": "0.5"}, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "from"
    response = await client.get("/v1/slots", params={"from": "2026-02-30", "to": "2026-03-01"}, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "from"
