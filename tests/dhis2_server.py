"""A local HTTP server speaking the part of DHIS2's Web API that Spean uses, so `spean report
dhis2` is tested over the wire: POST /api/dataValueSets with a JSON data value set, basic auth or
a personal access token (`Authorization: ApiToken d2pat_...`), `importStrategy` and `dryRun`.

It answers as DHIS2 2.38+ does: a WebMessage wrapping an ImportSummary, 200 when every value was
taken, 409 with status WARNING and the conflicts when some were not (an unknown data element or
org unit: the value is ignored, the others imported), 401 with a WebMessage for bad credentials.
Values are kept keyed as DHIS2 keys them, so a second push of a period updates, not duplicates.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Key = tuple[str, str, str, str, str]  # dataElement, period, orgUnit, categoryOptionCombo, attributeOptionCombo
DEFAULT_COMBO = "HllvX50cXC0"  # DHIS2's default category option combo


@dataclass
class Request:
    authorization: str
    query: dict[str, str]
    body: dict[str, Any]


@dataclass
class Dhis2Server:
    data_elements: set[str]
    org_units: set[str]
    username: str = "admin"
    password: str = "district"
    token: str = "d2pat_spean0000000000000000000000000000000"
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    values: dict[Key, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _authorised(self, header: str) -> bool:
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header in (f"ApiToken {self.token}", f"Basic {basic}")

    def handle(self, authorization: str, query: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        if not self._authorised(authorization):
            return 401, {
                "httpStatus": "Unauthorized",
                "httpStatusCode": 401,
                "status": "ERROR",
                "message": "Unauthorized",
            }
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"httpStatus": "Bad Request", "httpStatusCode": 400, "status": "ERROR", "message": "bad JSON"}
        with self._lock:
            self.requests.append(Request(authorization, query, body))
            return self._import(body, dry_run=query.get("dryRun") == "true", strategy=query.get("importStrategy"))

    def _import(self, body: dict[str, Any], *, dry_run: bool, strategy: str | None) -> tuple[int, dict[str, Any]]:
        counts = {"imported": 0, "updated": 0, "ignored": 0, "deleted": 0}
        conflicts: list[dict[str, Any]] = []
        for index, value in enumerate(body.get("dataValues", [])):
            problem = self._problem(value, body)
            if problem is not None:
                counts["ignored"] += 1
                conflicts.append({**problem, "indexes": [index]})
                continue
            key = (
                value["dataElement"],
                value.get("period") or body["period"],
                value.get("orgUnit") or body.get("orgUnit", ""),
                value.get("categoryOptionCombo") or DEFAULT_COMBO,
                value.get("attributeOptionCombo") or body.get("attributeOptionCombo") or DEFAULT_COMBO,
            )
            exists = key in self.values
            if (exists and strategy == "CREATE") or (not exists and strategy == "UPDATE"):
                counts["ignored"] += 1
                continue
            counts["updated" if exists else "imported"] += 1
            if not dry_run:
                self.values[key] = str(value["value"])
        status = "WARNING" if conflicts else "SUCCESS"
        summary = {
            "responseType": "ImportSummary",
            "status": status,
            "importOptions": {"dryRun": dry_run, "importStrategy": strategy or "CREATE_AND_UPDATE"},
            "description": "Import process completed successfully",
            "importCount": counts,
            "conflicts": conflicts,
            "dataSetComplete": "false",
        }
        if conflicts:
            message = "One more conflicts encountered, please check import summary."
            return 409, {"httpStatus": "Conflict", "httpStatusCode": 409, "status": "WARNING", "message": message,
                         "response": summary}  # fmt: skip
        return 200, {"httpStatus": "OK", "httpStatusCode": 200, "status": "OK", "message": "Import was successful.",
                     "response": summary}  # fmt: skip

    def _problem(self, value: dict[str, Any], body: dict[str, Any]) -> dict[str, Any] | None:
        element, org_unit = value.get("dataElement"), value.get("orgUnit") or body.get("orgUnit")
        if element not in self.data_elements:
            return {"object": element, "objects": {"dataElement": element}, "property": "dataElement",
                    "value": "Data element not found or not accessible", "errorCode": "E7610"}  # fmt: skip
        if org_unit not in self.org_units:
            return {"object": org_unit, "objects": {"organisationUnit": org_unit}, "property": "orgUnit",
                    "value": "Organisation unit not found or not accessible", "errorCode": "E7612"}  # fmt: skip
        try:
            float(value.get("value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return {"object": str(value.get("value")), "property": "value",
                    "value": "Value must be a number", "errorCode": "E7619"}  # fmt: skip
        return None


@contextmanager
def running(server: Dhis2Server) -> Iterator[Dhis2Server]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/api/dataValueSets":
                self._answer(404, {"httpStatus": "Not Found", "httpStatusCode": 404, "status": "ERROR"})
                return
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer(*server.handle(self.headers.get("Authorization", ""), query, raw))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # quiet in tests
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", server.port), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
