"""A small search engine over SQL: typed fields (what a searchable element is in SQL), criteria
(what a search asks of a field), and keyset pages. It knows nothing of HTTP or FHIR's syntax; the
FHIR layer declares which parameter searches which field (api/fhir/params.py) and parses values
into these criteria, so each rule below is written once for every type.

Time criteria compare ranges: a searched value stands for the whole span of its precision
(`2026` is the year, `2026-03-02` the day), a field is an instant or a period, and each comparator
is FHIR's range rule over both (eq: the field lies within the value; sa: it starts after the
value ends; ...). Arguments are numbered by one builder (`Sql`), after the fixed placeholders of
the access rules (domain/access.py), so no fragment depends on another's positions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg

from domain.name_fold import LATIN_FOLD
from infra.db import Connection

Comparator = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
TextMode = Literal["starts", "contains", "exact"]
KeyKind = Literal["instant", "uuid", "int", "text"]
_FOLD_FROM = "".join(LATIN_FOLD)
_FOLD_TO = "".join(LATIN_FOLD.values())


class Sql:
    """Numbers arguments: `b(value)` adds one and returns its placeholder. Placeholders of fixed
    fragments (the access rules) come first, given to the constructor."""

    def __init__(self, *fixed: object) -> None:
        self.args: list[object] = list(fixed)
        self._named: dict[str, str] = {}

    def __call__(self, value: object) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def once(self, name: str, value: object) -> str:
        """One placeholder per name, however often it is used."""
        if name not in self._named:
            self._named[name] = self(value)
        return self._named[name]


def fold(expr: str, b: Sql) -> str:
    """domain.name_fold in SQL: Latin diacritics off (the same table), then case. NFKC first, as
    there; translating before lower() keeps it right whatever the database's collation."""
    return (
        f"lower(translate(normalize({expr}, NFKC), {b.once('fold_from', _FOLD_FROM)}, {b.once('fold_to', _FOLD_TO)}))"
    )


# Fields: what a searchable element is in SQL. `source` is a FROM ... WHERE ... clause when a row
# holds several values (identifiers, names): the criterion then asks whether one of them matches.


@dataclass(frozen=True)
class Moment:
    """An instant (`high` None) or a period with an inclusive end, both timestamptz SQL."""

    low: str
    high: str | None = None

    @property
    def present(self) -> str:
        return f"{self.low} IS NOT NULL"


@dataclass(frozen=True)
class Coding:
    system: str  # SQL of the code system (a quoted literal, or NULL for none)
    code: str


@dataclass(frozen=True)
class Token:
    codings: tuple[Coding, ...]
    source: str | None = None

    @property
    def present(self) -> str:
        codes = " OR ".join(f"{c.code} IS NOT NULL" for c in self.codings)
        return f"EXISTS (SELECT 1 {self.source} AND ({codes}))" if self.source else f"({codes})"


@dataclass(frozen=True)
class Strings:
    exprs: tuple[str, ...]
    source: str | None = None
    folded: bool = False  # already in search form (domain.name_fold)
    words: bool = False  # `starts` matches the start of any word, not only of the whole value


@dataclass(frozen=True)
class Text:
    """`match` is searched folded (starts/contains); `exact` as written (defaults to `match`)."""

    match: Strings
    exact: Strings | None = None

    @property
    def present(self) -> str:
        s = self.exact or self.match
        values = " OR ".join(f"{e} IS NOT NULL" for e in s.exprs)
        return f"EXISTS (SELECT 1 {s.source} AND ({values}))" if s.source else f"({values})"


@dataclass(frozen=True)
class Ref:
    """References by target type: each a SQL condition with `{}` where the id goes."""

    targets: dict[str, str]
    present_sql: str

    @property
    def present(self) -> str:
        return self.present_sql


@dataclass(frozen=True)
class Id:
    expr: str
    kind: KeyKind = "uuid"
    present: str = "true"


Field = Moment | Token | Text | Ref | Id


# Criteria: what a search asks. A search is an AND of groups, each an OR of criteria.


@dataclass(frozen=True)
class DateIs:
    field: Moment
    comparator: Comparator
    start: datetime  # the searched span, end exclusive
    end: datetime


@dataclass(frozen=True)
class TokenIs:
    field: Token
    code: str | None  # None: any code of `system`
    system: str | None = None
    no_system: bool = False  # `|code`: the code without a system
    negate: bool = False  # `:not`: no value matches (also when the element is absent)


@dataclass(frozen=True)
class TextIs:
    field: Text
    mode: TextMode
    value: str  # folded already for starts/contains


@dataclass(frozen=True)
class RefIs:
    field: Ref
    target: str  # resource type
    id: uuid.UUID | None  # None: an id this server cannot hold, matching nothing


@dataclass(frozen=True)
class IdIs:
    field: Id
    value: object | None  # None: an id of the wrong shape, matching nothing


@dataclass(frozen=True)
class Missing:
    field: Field
    missing: bool


Criterion = DateIs | TokenIs | TextIs | RefIs | IdIs | Missing


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date(c: DateIs, b: Sql) -> str:
    low, high = c.field.low, c.field.high or c.field.low

    def s() -> str:  # placeholders only for the bounds a comparator uses
        return f"{b(c.start)}::timestamptz"

    def e() -> str:
        return f"{b(c.end)}::timestamptz"

    if c.comparator in ("eq", "ne"):
        within = f"({low} >= {s()} AND {high} < {e()})"
        return within if c.comparator == "eq" else f"({low} IS NOT NULL AND NOT {within})"
    return {
        "gt": lambda: f"({high} >= {e()})",
        "lt": lambda: f"({low} < {s()})",
        "ge": lambda: f"({high} >= {s()})",
        "le": lambda: f"({low} < {e()})",
        "sa": lambda: f"({low} >= {e()})",
        "eb": lambda: f"({high} < {s()})",
    }[c.comparator]()


def _token(c: TokenIs, b: Sql) -> str:
    alternatives = []
    for coding in c.field.codings:
        parts = []
        if c.code is not None:
            parts.append(f"{coding.code} = {b(c.code)}::text")
        if c.no_system:
            parts.append(f"{coding.system} IS NULL")
        elif c.system is not None:
            parts.append(f"{coding.system} = {b(c.system)}::text")
        alternatives.append("(" + " AND ".join(parts or ["true"]) + ")")
    found = " OR ".join(alternatives)
    match = f"EXISTS (SELECT 1 {c.field.source} AND ({found}))" if c.field.source else f"({found})"
    return f"(NOT {match})" if c.negate else match


def _text(c: TextIs, b: Sql) -> str:
    s = c.field.exact or c.field.match if c.mode == "exact" else c.field.match
    tests = []
    for expr in s.exprs:
        if c.mode == "exact":
            tests.append(f"{expr} = {b(c.value)}::text")
            continue
        folded = expr if s.folded else fold(expr, b)
        if c.mode == "contains":
            tests.append(f"{folded} LIKE {b('%' + _like(c.value) + '%')}::text")
        else:
            tests.append(f"{folded} LIKE {b(_like(c.value) + '%')}::text")
            if s.words:
                tests.append(f"{folded} LIKE {b('% ' + _like(c.value) + '%')}::text")
    found = " OR ".join(tests)
    return f"EXISTS (SELECT 1 {s.source} AND ({found}))" if s.source else f"({found})"


def _ref(c: RefIs, b: Sql) -> str:
    template = c.field.targets.get(c.target)
    if template is None or c.id is None:
        return "false"
    return "(" + template.format(f"{b(c.id)}::uuid") + ")"


_CAST = {"uuid": "::uuid", "int": "::bigint", "instant": "::timestamptz", "text": "::text"}


def _id(c: IdIs, b: Sql) -> str:
    if c.value is None:
        return "false"
    return f"({c.field.expr} = {b(c.value)}{_CAST[c.field.kind]})"


def render(c: Criterion, b: Sql) -> str:
    if isinstance(c, DateIs):
        return _date(c, b)
    if isinstance(c, TokenIs):
        return _token(c, b)
    if isinstance(c, TextIs):
        return _text(c, b)
    if isinstance(c, RefIs):
        return _ref(c, b)
    if isinstance(c, IdIs):
        return _id(c, b)
    return f"(NOT ({c.field.present}))" if c.missing else f"({c.field.present})"


def where(groups: list[list[Criterion]], b: Sql) -> str:
    """AND of the groups, each an OR of its criteria ("true" for none)."""
    rendered = ["(" + " OR ".join(render(c, b) for c in group) + ")" for group in groups if group]
    return " AND ".join(rendered) or "true"


# Sorting and keyset pages.


@dataclass(frozen=True)
class Key:
    """A sort key: non-null SQL (use coalesce), its kind, and its direction."""

    expr: str
    kind: KeyKind
    desc: bool = False

    def reversed(self) -> Key:
        return Key(self.expr, self.kind, not self.desc)


@dataclass
class Spec:
    """One page of a search: criteria, order (the table's unique key last), where to start."""

    criteria: list[list[Criterion]] = field(default_factory=list)
    order: list[Key] = field(default_factory=list)
    after: tuple[object, ...] | None = None  # keyset of the last row of the previous page
    before: tuple[object, ...] | None = None  # keyset of the first row of the next page (previous link)
    limit: int = 50
    total: bool = False


def _keyset(order: list[Key], values: tuple[object, ...], b: Sql) -> str:
    """Rows strictly after `values` in `order`, lexicographically."""
    ors = []
    for i, key in enumerate(order):
        ands = [f"{k.expr} = {b(v)}{_CAST[k.kind]}" for k, v in zip(order[:i], values[:i], strict=True)]
        ands.append(f"{key.expr} {'<' if key.desc else '>'} {b(values[i])}{_CAST[key.kind]}")
        ors.append("(" + " AND ".join(ands) + ")")
    return "(" + " OR ".join(ors) + ")"


async def fetch_page(
    conn: Connection,
    b: Sql,
    *,
    select: str,
    from_: str,
    conditions: list[str],
    spec: Spec,
    group_by: str | None = None,
) -> tuple[list[asyncpg.Record], list[tuple[object, ...]], bool, int | None]:
    """(rows, keysets, more, total) of one page. `conditions` (the access rule first) and the
    criteria are ANDed; reading `before` a keyset walks backwards and returns rows in order."""
    filters = [*conditions, where(spec.criteria, b)]
    total = None
    if spec.total:
        total_b = Sql(*b.args)
        count_sql = f"SELECT count(*) FROM (SELECT 1 FROM {from_} WHERE {' AND '.join(filters)}"
        count_sql += f" GROUP BY {group_by})" if group_by else ")"
        total = await conn.fetchval(count_sql + " AS matched", *total_b.args)
    if spec.limit == 0:
        return [], [], False, total
    sql = page_sql(b, select=select, from_=from_, filters=filters, spec=spec, group_by=group_by)
    return (*page_of(await conn.fetch(sql, *b.args), spec), total)


def page_sql(b: Sql, *, select: str, from_: str, filters: list[str], spec: Spec, group_by: str | None = None) -> str:
    """The SELECT of one page (spec.limit + 1 rows, each with its keyset as _k0, _k1...), in the
    direction read, given the access rule and the criteria (`where`) as `filters`: for a caller
    that runs it inside a statement of its own (page_order, page_of)."""
    filters = list(filters)
    order = page_order(spec)
    start = spec.before if spec.before is not None else spec.after
    if start is not None:
        filters.append(_keyset(order, start, b))
    keys = ", ".join(f"{k.expr} AS _k{i}" for i, k in enumerate(spec.order))
    sql = f"SELECT {select}, {keys} FROM {from_} WHERE {' AND '.join(filters)}"
    if group_by:
        sql += f" GROUP BY {group_by}"
    sql += " ORDER BY " + ", ".join(f"{k.expr} {'DESC' if k.desc else 'ASC'}" for k in order)
    return sql + f" LIMIT {b(spec.limit + 1)}"


def page_order(spec: Spec) -> list[Key]:
    """The order page_sql reads in (the keys reversed when reading `before` a keyset)."""
    return [k.reversed() for k in spec.order] if spec.before is not None else spec.order


def page_of(
    fetched: Sequence[asyncpg.Record], spec: Spec
) -> tuple[list[asyncpg.Record], list[tuple[object, ...]], bool]:
    """(rows in order, keysets, more) from page_sql's rows."""
    more = len(fetched) > spec.limit
    rows = list(fetched[: spec.limit])
    if spec.before is not None:
        rows.reverse()
    keysets = [tuple(r[f"_k{i}"] for i in range(len(spec.order))) for r in rows]
    return rows, keysets, more


def in_range(value: datetime | None, c: DateIs) -> bool:
    """The same comparators for an instant computed in Python (free slots)."""
    if value is None:
        return False
    return {
        "eq": c.start <= value < c.end,
        "ne": not c.start <= value < c.end,
        "gt": value >= c.end,
        "lt": value < c.start,
        "ge": value >= c.start,
        "le": value < c.end,
        "sa": value >= c.end,
        "eb": value < c.start,
    }[c.comparator]
