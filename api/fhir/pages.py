"""Bundles this server builds for history, documents and $everything: self and next links,
newest-first history entries, search entries; no `entry` when there is none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from api.fhir.clinical import Resource, instant


def query(params: dict[str, Any]) -> str:
    """`?a=1&b=2` of the parameters given (None left out), or nothing."""
    kept = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(kept)}" if kept else ""


def _links(self_url: str, next_url: str | None) -> list[dict[str, str]]:
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return links


def history_bundle(base: str, resources: list[Resource], self_url: str, next_url: str | None) -> Resource:
    """A history Bundle, newest first: each version as the write that made it."""
    links = _links(self_url, next_url)
    entries = []
    for r in resources:
        first = r["meta"]["versionId"] == "1"
        entries.append({
            "fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "POST" if first else "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            "response": {"status": "201 Created" if first else "200 OK",
                         "etag": f'W/"{r["meta"]["versionId"]}"', "lastModified": r["meta"]["lastUpdated"]},
        })  # fmt: skip
    document: Resource = {"resourceType": "Bundle", "type": "history", "timestamp": instant(datetime.now(UTC)),
                          "link": links}  # fmt: skip
    if entries:
        document["entry"] = entries
    return document


def searchset(base: str, resources: list[Resource], self_url: str, next_url: str | None) -> Resource:
    document: Resource = {"resourceType": "Bundle", "type": "searchset", "timestamp": instant(datetime.now(UTC)),
                          "link": _links(self_url, next_url)}  # fmt: skip
    if resources:
        document["entry"] = [
            {"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ]
    return document
