"""The OpenAPI description of each type's search, from the same table (api/fhir/params.py): the
search routes read their query themselves (FHIR's modifiers and repeats do not fit a typed
signature), so their parameters are added to the generated operation here."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import Operation, Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from api.fhir.params import SearchType

_REPEATABLE = Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING))
_ONE = Schema(type=OpenAPIType.STRING)
_ONE_UUID = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID)


def _query(name: str, description: str, *, required: bool = False, schema: Schema = _REPEATABLE) -> Parameter:
    return Parameter(
        name=name, param_in="query", schema=schema, description=description, required=required, style="form",
        explode=True,
    )  # fmt: skip


def _parameters(t: SearchType) -> list[Parameter]:
    """`t`'s parameters, then the result parameters; an empty value is ignored, as FHIR says."""
    # A required parameter names one thing (site=, schedule=); the others repeat (AND) as FHIR's do.
    found = [
        _query(p.name, f"{p.type} (FHIR search: modifiers, prefixes, commas): {p.doc}", required=p.required,
               schema=_ONE_UUID if p.name == "site" else _ONE if p.required else _REPEATABLE)
        for p in t.params
    ]  # fmt: skip
    one = _ONE
    found += [
        _query("_count", f"page size, 0 to {t.max_count} (default {t.count})",
               schema=Schema(type=OpenAPIType.INTEGER, minimum=0)),
        _query("_sort", "sortable parameters, comma separated, `-` for descending", schema=one),
        _query("_total", "none, estimate or accurate", schema=Schema(type=OpenAPIType.STRING,
                                                                     enum=["", "none", "estimate", "accurate"])),
        _query("_summary", "count or false (true, text, data: not supported, so ignored, or a 400 under"
               " Prefer: handling=strict)",
               schema=Schema(type=OpenAPIType.STRING, enum=["", "count", "false", "true", "text", "data"])),
        _query("_elements", "element names, comma separated", schema=one),
        _query("_cursor", "the page a next or previous link names", schema=one),
    ]  # fmt: skip
    if t.includes:
        found.append(_query("_include", ", ".join(t.includes)))
    if t.revincludes:
        found.append(_query("_revinclude", ", ".join(t.revincludes)))
    return found


def documented(t: SearchType) -> type[Operation]:
    """An Operation class that carries `t`'s search parameters."""
    parameters = _parameters(t)

    @dataclass
    class SearchOperation(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *parameters]

    return SearchOperation
