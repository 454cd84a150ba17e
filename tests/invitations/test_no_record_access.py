"""A guest sees the call and nothing else: their credential (the link's token, the browser's key,
or both together, however presented) is refused by every route of the API that is not public,
record routes first among them, with the real ids of the patient whose consultation they joined."""

from __future__ import annotations

import re
import secrets
import uuid

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from tests.factory import Consultation
from tests.invitations.conftest import invite, new_guest_phone, sms_link
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
# Routes anyone may call: none of them serves a record (checked below, so a new public route is seen),
# but a consultation report's link (/r/...), which serves its PDF only for the patient's results PIN;
# SMART's discovery and token endpoint authenticate a backend client by its signed assertion.
PUBLIC = re.compile(
    r"^/(health|ready|metrics|fhir/metadata|v1/auth/.*|v1/sms/.*|v1/ussd|v1/invitations/open|join(/.*)?"
    r"|rtc/consult|rtc/call-files\.js|r/\{token:str\}|rtc/workspace(/.*)?|rtc/static/.*|schema(/.*)?|dev/.*"
    r"|\.well-known/smart-configuration|auth/token"
    # The pre-call check: its script, style and texts; a guest's STUN/TURN and echo answer (no record).
    r"|rtc/\{name:str\}|rtc/precall-texts/\{language:str\}|v1/invitations/(ice-servers|echo))$"
)
RECORD_ROUTES = {
    "/v1/patients/{patient_id:uuid}/record",
    "/v1/patients/{patient_id:uuid}/attachments",
    "/v1/record/{entry_id:uuid}",
    "/v1/record/{entry_id:uuid}/content",
    "/v1/record/{entry_id:uuid}/history",
    "/v1/sync",
}


async def test_the_guest_credential_reaches_no_route_but_the_call(
    sms_client: Client, twilio: TwilioServer, consultation: Consultation
) -> None:
    c = consultation
    phone = new_guest_phone()
    created = await invite(sms_client, c.appointment_id, c.specialist.token, phone=phone)
    assert created.status_code == 201, created.text
    link = await sms_link(twilio, phone)
    device = secrets.token_urlsafe(24)
    opened = await sms_client.post("/v1/invitations/open", json={"token": link.token, "device": device})
    assert opened.status_code == 200, opened.text
    note = await sms_client.post(
        f"/v1/patients/{c.patient.patient_id}/record",
        json={"kind": "note", "text": "Interpreter needed: Khmer"},
        headers=c.chw.headers,
    )
    assert note.status_code == 201, note.text
    ids = {
        "patient_id": str(c.patient.patient_id),
        "entry_id": note.json()["id"],
        "appointment_id": str(c.appointment_id),
        "invitation_id": created.json()["id"],
        "facility_id": str(c.post),
        "practitioner_id": str(c.specialist.practitioner_id),
        "resource_type": "Patient",
        "ident": str(c.patient.patient_id),
    }
    credentials = [link.token, device, f"{link.token}.{device}", f"{link.token}:{device}", f"{device}{link.token}"]
    app = sms_client.app
    tried: set[str] = set()
    public: set[str] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                if handler.opt.get("exclude_from_auth") or route.path.startswith("/schema"):  # the API's docs
                    public.add(route.path)
                    continue
                path = _PARAM.sub(lambda m: ids.get(m[1], str(uuid.uuid4())), route.path)
                for credential in credentials:
                    answer = await sms_client.request(
                        method,
                        path,
                        headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
                        content=b"{}" if method in ("POST", "PUT", "PATCH") else None,
                    )
                    assert answer.status_code == 401, (method, route.path, credential, answer.text)
                    assert "invalid_token" in answer.text, (method, route.path, answer.text)
                tried.add(route.path)
    assert not RECORD_ROUTES - tried, RECORD_ROUTES - tried
    assert {p for p in tried if p.startswith("/fhir/")}, "FHIR routes were not tried"
    assert all(PUBLIC.match(p) for p in public), sorted(p for p in public if not PUBLIC.match(p))
