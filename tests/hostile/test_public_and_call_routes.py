"""Hostile input on the routes the OpenAPI fuzz run (tests/contract) does not reach: pages kept out
of the schema (/r/<token>, /rtc/..., /join/...), bodies that are not JSON (a call file's raw
bytes, a report link's PIN form, /auth/token's OAuth form), FHIR operations ($match), and the
consultation's own objects asked for by someone else or under another consultation.

Each answer is a 4xx with a machine-readable code (tests.hostile.refusal), never a 500; where the
product hides whether something exists, the answer for someone else's object is the answer for
one that never was."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Consultation, Factory, auth
from tests.hostile.refusal import HOSTILE, harmless, refused

Client = AsyncTestClient[Litestar]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
DEEP = 100_000  # nesting far past any decoder's recursion limit
JSON_BODIES: list[tuple[str, bytes]] = [
    ("deep array", b"[" * DEEP + b"]" * DEEP),
    ("deep object", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ("deep value", b'{"token":' + b"[" * DEEP + b"]" * DEEP + b', "resourceType": "Parameters", "parameter": []}'),
    ("deep parameter", b'{"resourceType":"Parameters","parameter":[{"name":"resource","resource":'
     + b'{"resourceType":"Patient","extension":' + b"[" * DEEP + b"]" * DEEP + b"}}]}"),
    ("huge string", b'{"token":"' + b"x" * 3_000_000 + b'"}'),
    ("many keys", b"{" + b",".join(b'"k%d":1' % i for i in range(200_000)) + b"}"),
    ("not utf-8", b'{"token":"\xff\xfe"}'),
    ("nul", b'{"token":"a\x00b"}'),
    ("truncated", b'{"token":'),
    ("not an object", b"[1,2,3]"),
    ("scalar", b"7"),
    ("empty", b""),
]  # fmt: skip
WRONG_TYPES = ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]


async def _consultation(factory: Factory) -> Consultation:
    return await factory.consultation()


async def _share(client: Client, c: Consultation, token: str, **params: str) -> Any:
    return await client.post(
        f"/v1/appointments/{c.appointment_id}/files",
        params=params or {"name": "x-ray.png"},
        content=PNG,
        headers=auth(token, **{"Content-Type": "image/png", "Idempotency-Key": uuid.uuid4().hex}),
    )


# --- pages outside the schema ---------------------------------------------------------------------


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
async def test_report_links_that_open_nothing_are_refused_with_their_code(client: Client, accept: str) -> None:
    for token in (*HOSTILE, "A" * 16, "A" * 65, "-" * 32):
        refused(await client.get(f"/r/{token}", headers={"Accept": accept}), 400, 404)
        answer = await client.post(f"/r/{token}", data={"pin": "1234"}, headers={"Accept": accept})
        refused(answer, 400, 404)
    # The PIN form sent as something else, or with a hostile PIN: still no report here.
    link = "/r/" + "A" * 32
    for content_type in ("application/json", "text/plain", "multipart/form-data; boundary=x", ""):
        answer = await client.post(link, content=b'{"pin":"1234"}', headers={"Content-Type": content_type})
        refused(answer, 400, 404, 415)
    for pin in ("\x00\x00\x00\x00", "\uff11\uff12\uff13\uff14", "1" * 100_000, "<script>alert(1)</script>"):
        refused(await client.post(link, data={"pin": pin}, headers={"Accept": "text/html"}), 400, 404, 413)
    for query in HOSTILE:
        refused(await client.get(f"{link}?pin={query}", headers={"Accept": "text/html"}), 400, 404)


async def test_rtc_and_guest_pages_take_any_name_without_harm(client: Client) -> None:
    for value in HOSTILE:
        for path in (
            f"/rtc/{value}",
            f"/rtc/precall-texts/{value}",
            f"/rtc/workspace/{value}",
            f"/rtc/static/{value}",
            f"/join/{value}",
            f"/rtc/consult?appointment={value}&lang={value}",
            f"/rtc/workspace?lang={value}",
            f"/join?lang={value}",
        ):
            harmless(await client.get(path, headers={"Accept": "text/html"}))


# --- JSON bodies the schema fuzz does not send ----------------------------------------------------


async def test_the_invitation_open_route_refuses_what_is_not_its_json(client: Client) -> None:
    for name, body in JSON_BODIES:
        answer = await client.post("/v1/invitations/open", content=body, headers={"Content-Type": "application/json"})
        assert refused(answer, 400, 413, 422), name
    for content_type in WRONG_TYPES:
        body = json.dumps({"token": "A" * 22, "device": "B" * 22}).encode()
        refused(await client.post("/v1/invitations/open", content=body, headers={"Content-Type": content_type}))
    for value in ("A" * 15 + "\x00", "A" * 20 + "\n", "\u202e" * 16, "A" * 100_000):
        answer = await client.post("/v1/invitations/open", json={"token": value, "device": "B" * 22})
        refused(answer, 400, 404, 422)


async def test_patient_match_refuses_what_is_not_a_parameters_resource(client: Client, factory: Factory) -> None:
    admin = await factory.admin_token()
    headers = auth(admin, **{"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    for name, body in JSON_BODIES:
        assert refused(await client.post("/fhir/Patient/$match", content=body, headers=headers), 400, 413, 422), name
    for content_type in WRONG_TYPES:
        answer = await client.post(
            "/fhir/Patient/$match",
            content=b'{"resourceType":"Parameters"}',
            headers={**headers, "Content-Type": content_type},
        )
        refused(answer, 400, 415, 422)

    def match(*parameters: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Parameters", "parameter": list(parameters)}

    odd = [
        match({"name": "\x00" * 10}),
        match({"name": "count", "valueInteger": 10**30}),
        match({"name": "resource", "resource": {"resourceType": "Observation"}}),
        match({"name": "resource", "resource": {"resourceType": "Patient", "name": [{"family": "A" * 100_000}]}}),
        {"resourceType": "Patient"},
    ]
    for document in odd:
        answer = await client.post("/fhir/Patient/$match", content=json.dumps(document).encode(), headers=headers)
        refused(answer, 400, 413, 422)


async def test_the_smart_token_route_answers_oauth_errors_to_any_body(client: Client) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "x.y.z",
        "scope": "system/*.read",
    }
    for content_type in ["application/json", *WRONG_TYPES[:3], ""]:
        refused(
            await client.post("/auth/token", content=json.dumps(form).encode(), headers={"Content-Type": content_type})
        )
    for key in form:
        for value in ("\x00", "\xff", "A" * 100_000, "a.b.c\n", "%ff"):
            refused(await client.post("/auth/token", data={**form, key: value}), 400, 401, 413)
    raw = b"grant_type=client_credentials&client_assertion=%ff%fe&client_assertion_type=%00"
    answer = await client.post(
        "/auth/token", content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    refused(answer, 400, 401)
    for name, body in JSON_BODIES:
        answer = await client.post("/auth/token", content=body, headers={"Content-Type": "application/json"})
        assert refused(answer, 400, 401, 413), name


async def test_prescription_codes_that_name_nothing_are_refused(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    for code in (*HOSTILE, "RX-" + "A" * 200, "0" * 12, "%20"):
        refused(await client.get(f"/v1/prescriptions/{code}", headers=auth(scene.specialist.token)), 400, 404, 422)
        answer = await client.get(f"/v1/prescriptions/{code}/print", headers=auth(scene.specialist.token))
        refused(answer, 400, 404, 422)


# --- a consultation's objects, asked for by someone else ---------------------------------------


async def test_call_files_refuse_wrong_bodies_and_other_consultations(client: Client, factory: Factory) -> None:
    a, b = await _consultation(factory), await _consultation(factory)
    files = f"/v1/appointments/{a.appointment_id}/files"
    for content_type in ["application/json", "multipart/form-data; boundary=x", "image/svg+xml", "", "image/png\x00"]:
        answer = await client.post(files, content=PNG, headers=auth(a.patient.token, **{"Content-Type": content_type}))
        refused(answer, 400, 415)
    for name in HOSTILE:
        answer = await client.post(
            f"{files}?name={name}", content=PNG, headers=auth(a.patient.token, **{"Content-Type": "image/png"})
        )
        assert answer.status_code in (201, 400, 422), answer.text  # a name is cleaned, or refused
        if answer.status_code != 201:
            refused(answer)
    shared = (await _share(client, a, a.patient.token)).json()
    mine = f"{files}/{shared['id']}"
    assert (await client.get(f"{mine}/content", headers=auth(a.specialist.token))).status_code == 200
    # Under the other consultation, by its own members: that file is not there.
    under_b = f"/v1/appointments/{b.appointment_id}/files/{shared['id']}"
    unknown = f"/v1/appointments/{b.appointment_id}/files/{uuid.uuid4()}"
    for member in (b.specialist, b.patient):
        there = await client.get(f"{under_b}/content", headers=auth(member.token))
        never = await client.get(f"{unknown}/content", headers=auth(member.token))
        assert (there.status_code, refused(there)) == (never.status_code, refused(never)) == (404, refused(never))
    filed = await client.post(f"{under_b}/file-into-record", headers=auth(b.specialist.token))
    refused(filed, 404)
    # Not a member of the consultation: refused, whichever file is asked for.
    for who in (b.specialist, b.patient, b.chw):
        refused(await client.get(f"{mine}/content", headers=auth(who.token)), 403, 404)
        refused(await client.get(files, headers=auth(who.token)), 403, 404)
        refused(await client.post(f"{mine}/file-into-record", headers=auth(who.token)), 403, 404)
    for bad in ("not-a-uuid", "%ff", "%00", "x" * 5000):
        refused(await client.get(f"{files}/{bad}/content", headers=auth(a.specialist.token)), 400, 404)
    # A retried upload (same Idempotency-Key, as an app resends after a lost answer) shares it once.
    key = {"Content-Type": "image/png", "Idempotency-Key": uuid.uuid4().hex}
    sent = [await client.post(files, content=PNG, headers=auth(a.patient.token, **key)) for _ in range(2)]
    assert [r.status_code for r in sent] == [201, 201], [r.text for r in sent]
    assert sent[0].json()["id"] == sent[1].json()["id"]
    listed = (await client.get(files, headers=auth(a.specialist.token))).json()["items"]
    assert [f["id"] for f in listed].count(sent[0].json()["id"]) == 1
    # The same key with another body is refused, not taken as a retry.
    other = await client.post(files, content=PNG + b"\x00", headers=auth(a.patient.token, **key))
    refused(other, 409, 422)
    # Filing twice gives the same entry: a retried POST does not file it again.
    first = await client.post(f"{mine}/file-into-record", headers=auth(a.specialist.token))
    again = await client.post(f"{mine}/file-into-record", headers=auth(a.specialist.token))
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["id"] == again.json()["id"]


async def test_reports_and_invitations_of_another_consultation_are_refused(client: Client, factory: Factory) -> None:
    a, b = await _consultation(factory), await _consultation(factory)
    for who in (b.specialist, b.patient, b.chw):
        answer = await client.post(
            f"/v1/consultations/{a.appointment_id}/report",
            headers=auth(who.token, **{"Idempotency-Key": uuid.uuid4().hex}),
        )
        refused(answer, 403, 404)
    never = await client.post(
        f"/v1/consultations/{uuid.uuid4()}/report",
        headers=auth(b.specialist.token, **{"Idempotency-Key": uuid.uuid4().hex}),
    )
    refused(never, 403, 404)
    invite = {"phone": "+84981234567", "name": "Chan Dara", "role": "interpreter", "language": "km"}
    created = await client.post(
        f"/v1/appointments/{a.appointment_id}/invitations",
        json=invite,
        headers=auth(a.specialist.token, **{"Idempotency-Key": uuid.uuid4().hex}),
    )
    assert created.status_code == 201, created.text
    invitation = created.json()["id"]
    revoke_under_b = f"/v1/appointments/{b.appointment_id}/invitations/{invitation}/revoke"
    refused(await client.post(revoke_under_b, headers=auth(b.specialist.token)), 404)
    for who in (b.specialist, b.patient):
        answer = await client.post(
            f"/v1/appointments/{a.appointment_id}/invitations/{invitation}/revoke", headers=auth(who.token)
        )
        refused(answer, 403, 404)
        refused(await client.get(f"/v1/appointments/{a.appointment_id}/invitations", headers=auth(who.token)), 403, 404)
    for name, body in JSON_BODIES:
        answer = await client.post(
            f"/v1/appointments/{a.appointment_id}/invitations",
            content=body,
            headers=auth(
                a.specialist.token, **{"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
            ),
        )
        assert refused(answer, 400, 413, 422), name
