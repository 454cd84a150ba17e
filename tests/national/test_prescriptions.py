"""Electronic prescriptions: the code stamped with the licence and facility code, kept by later
versions; FHIR MedicationRequest; verification by code and who may do it; the print page and its
QR code (decoded); the national exporter against a local FHIR endpoint."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import zxingcpp
from litestar import Litestar
from litestar.testing import AsyncTestClient
from PIL import Image

from api.prescriptions.export import FhirMedicationRequestExporter, drain
from domain.prescriptions import codes
from tests.factory import Factory, PatientLogin, Staff, auth
from tests.fhir.test_resources import validate
from tests.test_cli import spean

Client = AsyncTestClient[Litestar]
LICENCE = {"system": "https://moh.example.gov.kh/licences", "number": "MD-0042"}
FACILITY = {"system": "https://moh.example.gov.kh/facilities", "code": "KH-PP-0107"}
PARACETAMOL = {"kind": "prescription", "drug": "Paracetamol", "dose": "500 mg", "route": "oral",
               "frequency": "3 times a day", "duration_days": 5, "instructions": "after meals"}  # fmt: skip


@dataclass
class Ward:
    post: uuid.UUID
    clinician: Staff
    patient: PatientLogin


@pytest.fixture(scope="module")
async def ward(client: Client, factory: Factory) -> Ward:
    post = await factory.facility(kind="health_post")
    clinician = await factory.staff(post, role="clinician")
    admin = await factory.facility_admin(post)
    licence = await client.put(f"/v1/practitioners/{clinician.practitioner_id}/licence", json=LICENCE,
                               headers=auth(admin))  # fmt: skip
    assert licence.status_code == 200, licence.text
    code = await client.put(f"/v1/facilities/{post}/national-code", json=FACILITY, headers=auth(admin))
    assert code.status_code == 200, code.text
    patient = await factory.patient_login(post)
    language = await client.patch(f"/v1/patients/{patient.patient_id}", json={"preferred_language": "vi"},
                                  headers=clinician.headers)  # fmt: skip
    assert language.status_code == 200
    return Ward(post, clinician, patient)


async def prescribe(client: Client, ward: Ward, **changes: Any) -> dict[str, Any]:
    answer = await client.post(f"/v1/patients/{ward.patient.patient_id}/record", json={**PARACETAMOL, **changes},
                               headers=ward.clinician.headers)  # fmt: skip
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_only_admins_set_licences_and_facility_codes(client: Client, factory: Factory, ward: Ward) -> None:
    own = await client.put(f"/v1/practitioners/{ward.clinician.practitioner_id}/licence", json=LICENCE,
                           headers=ward.clinician.headers)  # fmt: skip
    assert own.status_code == 403
    other_admin = await factory.facility_admin(await factory.facility(kind="health_post"))
    for path, body in ((f"/v1/practitioners/{ward.clinician.practitioner_id}/licence", LICENCE),
                       (f"/v1/facilities/{ward.post}/national-code", FACILITY)):  # fmt: skip
        assert (await client.put(path, json=body, headers=auth(other_admin))).status_code == 403
    someone = await factory.staff(ward.post, role="clinician")
    taken = await client.put(f"/v1/practitioners/{someone.practitioner_id}/licence", json=LICENCE,
                             headers=auth(await factory.admin_token()))  # fmt: skip
    assert taken.status_code == 409  # one licence number, one practitioner


async def test_a_prescription_is_stamped_and_keeps_its_stamp(client: Client, ward: Ward, db: asyncpg.Pool) -> None:
    written = await prescribe(client, ward)
    body = written["body"]
    code = body["prescription_code"]
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{16}", code)
    assert codes.canonical(code) == code
    assert body["prescriber_licence"] == {"system": LICENCE["system"], "value": LICENCE["number"]}
    assert body["facility_code"] == {"system": FACILITY["system"], "value": FACILITY["code"]}
    other = await prescribe(client, ward, drug="Amoxicillin")
    assert other["body"]["prescription_code"] != code
    corrected = await client.post(
        f"/v1/record/{written['id']}/correct", headers=ward.clinician.headers,
        json={"expected_version": 1, "reason": "dose", "entry": {**PARACETAMOL, "dose": "1 g"}},
    )  # fmt: skip
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["body"]["prescription_code"] == code
    assert corrected.json()["body"]["dose"] == "1 g"
    queued = await db.fetch("SELECT version FROM prescription_exports WHERE code = $1 ORDER BY version", code)
    assert [r["version"] for r in queued] == [1, 2]  # every version goes to the national platform
    # The code is unique by the database too, not only by chance.
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            "INSERT INTO prescriptions (code, entry_id, patient_id, prescriber_id) VALUES ($1, $2, $3, $4)",
            code, uuid.uuid4(), ward.patient.patient_id, ward.clinician.user_id,
        )  # fmt: skip


async def test_medication_request_carries_code_licence_and_facility(client: Client, ward: Ward) -> None:
    written = await prescribe(client, ward)
    answer = await client.get(f"/fhir/MedicationRequest/{written['id']}", headers=ward.clinician.headers)
    resource = answer.json()
    validate(resource)
    assert resource["identifier"] == [{"use": "official", "system": "https://spean.dev/fhir/sid/prescription-code",
                                       "value": written["body"]["prescription_code"]}]  # fmt: skip
    assert resource["requester"] == {"type": "Practitioner", "identifier": {"system": LICENCE["system"],
                                                                            "value": LICENCE["number"]}}  # fmt: skip
    assert resource["extension"][0]["valueReference"]["identifier"] == {"system": FACILITY["system"],
                                                                         "value": FACILITY["code"]}  # fmt: skip


async def test_who_may_check_a_prescription(client: Client, factory: Factory, ward: Ward, db: asyncpg.Pool) -> None:
    code = (await prescribe(client, ward))["body"]["prescription_code"]
    typed = codes.display(code).lower()  # as a pharmacist types it from paper
    here = await client.get(f"/v1/prescriptions/{typed}", headers=ward.clinician.headers)
    assert here.status_code == 200, here.text
    view = here.json()
    assert view["code"] == code
    assert view["prescription"]["drug"] == "Paracetamol"
    assert view["prescriber_licence"] == {"system": LICENCE["system"], "value": LICENCE["number"]}
    assert view["verification_url"].endswith(f"/v1/prescriptions/{codes.display(code)}")
    assert (await client.get(f"/v1/prescriptions/{code}", headers=ward.patient.headers)).status_code == 200
    elsewhere = await factory.staff(await factory.facility(kind="health_post"), role="clinician")
    refused = await client.get(f"/v1/prescriptions/{code}", headers=elsewhere.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "prescription_access_denied"
    assert await db.fetchval(
        "SELECT outcome FROM audit_events WHERE actor_user_id = $1 AND resource_type = 'MedicationRequest'",
        elsewhere.user_id,
    ) == "refused"  # fmt: skip
    printed = await client.get(f"/v1/prescriptions/{code}/print", headers=elsewhere.headers)
    assert printed.status_code == 403
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    assert (await client.get(f"/v1/prescriptions/{typo}", headers=ward.clinician.headers)).json()["code"] == (
        "invalid_prescription_code"
    )
    unknown = "0" * 15 + codes.check_character("0" * 15)
    assert (await client.get(f"/v1/prescriptions/{unknown}", headers=ward.clinician.headers)).status_code == 404


async def test_the_print_page_and_its_qr_code(client: Client, ward: Ward) -> None:
    code = (await prescribe(client, ward))["body"]["prescription_code"]
    page = await client.get(f"/v1/prescriptions/{code}/print", headers=ward.patient.headers)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="vi">' in html
    assert "Đơn thuốc" in html
    assert "uống" in html
    assert "size: A5" in html
    assert codes.display(code) in html
    assert "MD-0042" in html
    assert "KH-PP-0107" in html
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', html)[1])  # type: ignore[index]
    decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]
    assert decoded == [f"{client.app.state.settings.public_base_url}/v1/prescriptions/{codes.display(code)}"]
    a4 = await client.get(f"/v1/prescriptions/{code}/print", params={"paper": "A4"}, headers=ward.patient.headers)
    assert "size: A4" in a4.text


class NationalPlatform:
    """A local FHIR endpoint: accepts MedicationRequest creates; a drug named `flaky…` gets a 503
    the first time, `refused…` a 400 every time."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []
        seen: set[str] = set()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                resource = json.loads(self.rfile.read(int(self.headers["content-length"])))
                platform.tokens.append(self.headers.get("authorization"))
                drug = resource["medicationCodeableConcept"]["text"]
                status = 201
                if self.path != "/fhir/MedicationRequest" or resource.get("resourceType") != "MedicationRequest":
                    status = 404
                elif drug.startswith("refused"):
                    status = 400
                elif drug.startswith("flaky") and drug not in seen:
                    seen.add(drug)
                    status = 503
                else:
                    platform.received.append(resource)
                self.send_response(status)
                self.send_header("content-type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "OperationOutcome", "issue": []}')

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def platform() -> Iterator[NationalPlatform]:
    served = NationalPlatform()
    yield served
    served.server.shutdown()
    served.server.server_close()


async def test_the_exporter_sends_each_version_once_retrying_and_giving_up(
    client: Client, ward: Ward, db: asyncpg.Pool, platform: NationalPlatform
) -> None:
    good = (await prescribe(client, ward))["body"]["prescription_code"]
    flaky = (await prescribe(client, ward, drug=f"flaky {uuid.uuid4().hex[:6]}"))["body"]["prescription_code"]
    refused = (await prescribe(client, ward, drug=f"refused {uuid.uuid4().hex[:6]}"))["body"]["prescription_code"]
    exporter = FhirMedicationRequestExporter(platform.url, "national-token")
    try:
        await drain(db, exporter, max_attempts=5)
        sent = {r["identifier"][0]["value"] for r in platform.received}
        assert good in sent
        assert flaky not in sent
        assert refused not in sent
        assert set(platform.tokens) == {"Bearer national-token"}
        for r in platform.received:
            validate(r)
        state = {
            r["code"]: r
            for r in await db.fetch(
                "SELECT code, attempts, sent_at, failed_at, last_error, available_at > now() AS later "
                "FROM prescription_exports WHERE code = ANY($1::text[])",
                [good, flaky, refused],
            )
        }
        assert state[good]["sent_at"] is not None
        assert state[flaky]["sent_at"] is None
        assert state[flaky]["failed_at"] is None
        assert state[flaky]["later"]
        assert state[refused]["failed_at"] is not None
        assert "HTTP 400" in state[refused]["last_error"]
        # The retry falls due: it goes out, once.
        await db.execute("UPDATE prescription_exports SET available_at = now() WHERE code = $1", flaky)
        await drain(db, exporter, max_attempts=5)
        assert [r["identifier"][0]["value"] for r in platform.received].count(flaky) == 1
        assert [r["identifier"][0]["value"] for r in platform.received].count(good) == 1
        assert await db.fetchval("SELECT sent_at IS NOT NULL FROM prescription_exports WHERE code = $1", flaky)
    finally:
        await exporter.aclose()


async def test_the_cli_sends_what_is_due_and_says_what_is_queued(
    client: Client, database_url: str, servers: tuple[str, str], tmp_path: Path, platform: NationalPlatform, ward: Ward
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": servers[1], "SPEAN_DATA_DIR": str(tmp_path),
           "SPEAN_LOG_LEVEL": "warning"}  # fmt: skip
    code = (await prescribe(client, ward, drug="Metformin"))["body"]["prescription_code"]
    nothing = spean(env, "prescriptions", "export", "--once", check=False)
    assert nothing.returncode == 2
    assert "SPEAN_PRESCRIPTION_EXPORT_URL" in nothing.stdout
    queued = re.match(r"pending (\d+), sent (\d+), failed (\d+)", spean(env, "prescriptions", "status").stdout)
    assert queued is not None
    assert int(queued[1]) >= 1
    sent = spean({**env, "SPEAN_PRESCRIPTION_EXPORT_URL": platform.url}, "prescriptions", "export", "--once")
    assert re.search(r"[1-9]\d* prescription version\(s\) handled", sent.stdout)
    assert code in {r["identifier"][0]["value"] for r in platform.received}
    after = re.match(r"pending (\d+), sent (\d+)", spean(env, "prescriptions", "status").stdout)
    assert after is not None
    assert int(after[2]) > int(queued[2])
