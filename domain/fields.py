"""Bounded field types shared by every request schema: no text field of the API is unbounded.

A value over its limit is refused while decoding (400, naming the field), before it reaches a
rule or the database. The limits are the README's ("Limits"); the database's own CHECKs match.
NUL and the calendar's edges are refused for every field at once (api/input_rules.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "Code",
    "Int32",
    "LongText",
    "Name",
    "Phone",
    "Reason",
    "ShortText",
    "Token",
    "Uri",
    "Version",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
"""A person's or a place's name."""
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
"""Short free text: a province, a qualification, a display label, an identifier system."""
Code = Annotated[str, msgspec.Meta(max_length=64)]
"""A code or key: a time zone, a language tag, a country, a time of day, a mode."""
Phone = Annotated[str, msgspec.Meta(max_length=32)]
"""A phone number as typed (normalised to E.164 by the domain)."""
Token = Annotated[str, msgspec.Meta(max_length=512)]
"""An opaque token or code handed out by this server."""
Uri = Annotated[str, msgspec.Meta(max_length=500)]
"""A URI (FHIR systems, references, fullUrls)."""
Reason = Annotated[str, msgspec.Meta(max_length=2000)]
"""A reason or note typed by a person."""
LongText = Annotated[str, msgspec.Meta(max_length=20_000)]
"""Long clinical text (notes, advice)."""

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
"""A small integer stored in an int4 column (weekday, minutes, years)."""
Version = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
"""A version number (int4 in the database)."""
