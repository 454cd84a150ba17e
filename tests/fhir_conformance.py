"""Every FHIR resource the server emits in the suite, checked by an independent R4 validator.

The FHIR models that shape Spean's output cannot be their own judge, so the suite validates what
it receives with a validator that shares no code with Spean: tests/fhir_validator/validate.mjs, a
Node program checking each resource against HL7's published R4 StructureDefinitions (structure,
cardinality, fixed values, slicing, FHIRPath invariants, required bindings) and the R4
vital-signs profiles. HL7's Java validator would be the reference one, but neither it nor the
hl7.fhir.r4.core package can be had from the registries this project reaches; Medplum's
validator and the same definitions can (npm), pinned in tests/fhir_validator/package.json.

`capture_fhir` wraps the app under test: every response whose content type is FHIR JSON (or
NDJSON, one resource a line) is queued; tests/conftest.py validates the queue after each test and
fails that test with each resource's issues. Tests against a live `spean serve` queue what their
client received through `collect`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import brotli
import zstandard
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.fhir.errors import REQUEST_ID_EXTENSION

FOLDER = Path(__file__).parent / "fhir_validator"
SCRIPT = FOLDER / "validate.mjs"
FHIR_TYPES = ("application/fhir+json", "application/fhir+ndjson")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "br": brotli.decompress,
    "gzip": gzip.decompress,
    "zstd": lambda body: zstandard.ZstdDecompressor().decompress(body),
    "identity": lambda body: body,
}


@dataclass(frozen=True)
class Emitted:
    """A resource as the server sent it, and where it came from."""

    origin: str
    resource: Any


@dataclass
class Validator:
    """One Node process for the whole run, started on first use; results are cached by content."""

    _proc: subprocess.Popen[str] | None = None
    _seen: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    seconds: float = 0.0  # spent validating, start-up included (the run's summary shows it)

    def _start(self) -> subprocess.Popen[str]:
        node = shutil.which("node")
        if node is None or not (FOLDER / "node_modules" / "@medplum" / "core").is_dir():
            raise RuntimeError(
                "the FHIR validator needs Node.js 20.19+ and its packages: install nodejs and npm, "
                "then run `make install` (npm ci in tests/fhir_validator)"
            )
        proc = subprocess.Popen(
            [node, str(SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=FOLDER
        )
        assert proc.stdout is not None
        hello = proc.stdout.readline()
        if not hello or not json.loads(hello).get("ready"):
            proc.kill()
            raise RuntimeError(f"the FHIR validator did not start (exit {proc.poll()})")
        return proc

    def issues(self, resource: Any) -> list[dict[str, str]]:
        """The validator's issues for `resource` (errors and warnings)."""
        text = json.dumps(_without_request_id(resource), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            if digest in self._seen:
                return self._seen[digest]
            started = time.perf_counter()
            try:
                found = self._ask(resource)
            finally:
                self.seconds += time.perf_counter() - started
            self._seen[digest] = found
            return found

    def _ask(self, resource: Any) -> list[dict[str, str]]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._next += 1
        self._proc.stdin.write(json.dumps({"id": self._next, "resource": resource}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the FHIR validator stopped (exit {self._proc.poll()})")
        answer = json.loads(line)
        assert answer["id"] == self._next, answer
        found: list[dict[str, str]] = answer["issues"]
        return found

    def close(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


@dataclass
class Conformance:
    """Resources emitted since the last check, and the validator that judges them."""

    validator: Validator = field(default_factory=Validator)
    pending: list[Emitted] = field(default_factory=list)
    checked: int = 0
    warnings: set[str] = field(default_factory=set)  # distinct, shown once at the end of the run

    def collect(self, resource: Any, origin: str = "client") -> None:
        self.pending.append(Emitted(origin, resource))

    def collect_body(self, origin: str, content_type: str, encoding: str, body: bytes) -> None:
        if not body:
            return
        body = DECODERS[encoding or "identity"](body)
        if content_type.startswith("application/fhir+ndjson"):
            for n, line in enumerate(body.splitlines(), 1):
                if line.strip():
                    self.collect(_parse(line), f"{origin} (line {n})")
        else:
            self.collect(_parse(body), origin)

    def failures(self) -> list[str]:
        """Validates what is pending; one report per resource that has an error."""
        pending, self.pending = self.pending, []
        reports = []
        for emitted in pending:
            self.checked += 1
            issues = self.validator.issues(emitted.resource)
            errors = [i for i in issues if i["severity"] in ("error", "fatal")]
            self.warnings.update(_UUID.sub("{uuid}", i["message"]) for i in issues if i["severity"] == "warning")
            if errors:
                reports.append(_report(emitted, errors))
                _keep(emitted, errors)
        return reports


def _without_request_id(resource: Any) -> Any:
    """An OperationOutcome as the cache keys it: every error carries its own request id (hex, in
    an extension), and thousands of otherwise equal outcomes would each cost a validation."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
        return resource
    extensions = [
        {**e, "valueString": "-"} if isinstance(e, dict) and e.get("url") == REQUEST_ID_EXTENSION else e
        for e in resource.get("extension", [])
    ]
    return {**resource, "extension": extensions}


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return {"resourceType": None, "unparsable": body[:500].decode("utf-8", "replace")}


def _keep(emitted: Emitted, errors: list[dict[str, str]]) -> None:
    """With SPEAN_FHIR_INVALID_DIR set, each invalid resource is written there whole (a report
    shows its first 2,000 characters)."""
    folder = os.environ.get("SPEAN_FHIR_INVALID_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(json.dumps(emitted.resource, sort_keys=True).encode()).hexdigest()[:16]
        record = {"origin": emitted.origin, "errors": errors, "resource": emitted.resource}
        (Path(folder) / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False))


def _report(emitted: Emitted, errors: list[dict[str, str]]) -> str:
    resource = emitted.resource
    kind = resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
    ident = resource.get("id") if isinstance(resource, dict) else None
    lines = [f"{kind}/{ident} from {emitted.origin} is not valid FHIR R4:"]
    lines += [f"  - {e['path']}: {e['message']}" for e in errors]
    text = json.dumps(resource, ensure_ascii=False)
    lines.append(f"  resource: {text[:2000]}{'…' if len(text) > 2000 else ''}")
    return "\n".join(lines)


def capture_fhir(app: ASGIApp, conformance: Conformance) -> ASGIApp:
    """`app`, queueing every FHIR response body it sends on `conformance`."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        content_type = encoding = ""
        chunks: list[bytes] = []

        async def sending(message: Message) -> None:
            nonlocal content_type, encoding
            if message["type"] == "http.response.start":
                headers = {bytes(k).lower(): bytes(v).decode("latin-1") for k, v in message.get("headers") or []}
                content_type = headers.get(b"content-type", "").lower()
                encoding = headers.get(b"content-encoding", "").lower()
            elif message["type"] == "http.response.body" and content_type.startswith(FHIR_TYPES):
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    origin = f"{scope.get('method')} {scope['path']}"
                    conformance.collect_body(origin, content_type, encoding, b"".join(chunks))
            await send(message)

        await app(scope, receive, sending)

    return wrapped


CONFORMANCE = Conformance()
