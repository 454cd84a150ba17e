"""Consent through HTTP: reads of the record outside consent are refused with consent_required;
network, facility and practitioner consents; revocation; break-glass flagged; the access log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, PatientLogin, Staff, iso, next_local

Client = AsyncTestClient[Litestar]
TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 38.2, "unit": "Cel"}


@dataclass(frozen=True)
class Cast:
    centre: uuid.UUID
    post: uuid.UUID
    chw: Staff
    specialist: Staff
    patient: PatientLogin
    entry_id: str

    @property
    def record(self) -> str:
        return f"/v1/patients/{self.patient.patient_id}/record"


async def cast(client: Client, factory: Factory) -> Cast:
    """A health post that refers to a reference centre, its patient (with a login) with one entry."""
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    await factory.post(
        f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, await factory.admin_token()
    )
    chw = await factory.staff(post, role="chw")
    specialist = await factory.staff(centre)
    patient = await factory.patient_login(post)
    response = await client.post(f"/v1/patients/{patient.patient_id}/record", json=TEMPERATURE, headers=chw.headers)
    assert response.status_code == 201, response.text
    return Cast(centre, post, chw, specialist, patient, response.json()["id"])


async def consent(client: Client, who: PatientLogin | Staff, patient: uuid.UUID, body: dict[str, Any]) -> Any:
    response = await client.post(f"/v1/patients/{patient}/consents", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def refused(client: Client, path: str, who: Staff) -> None:
    response = await client.get(path, headers=who.headers)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "consent_required"


class TestConsent:
    async def test_network_consent_opens_the_record_and_revocation_closes_it(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        c = await cast(client, factory)
        await refused(client, c.record, c.specialist)
        await refused(client, f"/v1/record/{c.entry_id}", c.specialist)
        granted = await consent(client, c.patient, c.patient.patient_id, {"scope": "network"})
        assert (granted["method"], granted["facility_id"]) == ("app", str(c.post))
        response = await client.get(c.record, headers=c.specialist.headers)
        assert response.status_code == 200, response.text
        assert [e["id"] for e in response.json()["items"]] == [c.entry_id]
        purpose = await db.fetchval(
            "SELECT purpose FROM audit_events WHERE actor_user_id = $1 AND resource_type = 'Record' "
            "AND outcome <> 'refused'",  # the two refused reads above are audited too
            c.specialist.user_id,
        )
        assert purpose == "consent"
        revoked = await client.post(
            f"/v1/consents/{granted['id']}/revoke", json={"reason": "changed my mind"}, headers=c.patient.headers
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        await refused(client, c.record, c.specialist)
        listed = (await client.get(f"/v1/patients/{c.patient.patient_id}/consents", headers=c.patient.headers)).json()
        assert [x["revoked_at"] is not None for x in listed] == [True]

    async def test_practitioner_and_facility_scopes(self, client: Client, factory: Factory) -> None:
        c = await cast(client, factory)
        other_centre = await factory.facility()
        elsewhere = await factory.staff(other_centre)
        colleague = await factory.staff(other_centre)
        await refused(client, c.record, elsewhere)
        await consent(
            client,
            c.patient,
            c.patient.patient_id,
            {"scope": "practitioner", "practitioner_id": str(elsewhere.practitioner_id)},
        )
        assert (await client.get(c.record, headers=elsewhere.headers)).status_code == 200
        await refused(client, c.record, colleague)
        await refused(client, c.record, c.specialist)  # a network consent was not given
        await consent(client, c.patient, c.patient.patient_id, {"scope": "facility", "facility_id": str(other_centre)})
        assert (await client.get(c.record, headers=colleague.headers)).status_code == 200

    async def test_a_chw_records_consent_with_a_witness(self, client: Client, factory: Factory) -> None:
        c = await cast(client, factory)
        path = f"/v1/patients/{c.patient.patient_id}/consents"
        response = await client.post(path, json={"scope": "network"}, headers=c.chw.headers)
        assert response.json()["code"] == "witness_required"
        body = {"scope": "network", "method": "chw_witness", "witness_name": "Sok Dara (village chief)"}
        granted = await consent(client, c.chw, c.patient.patient_id, body)
        assert (granted["method"], granted["witness_name"]) == ("chw_witness", "Sok Dara (village chief)")
        assert (await client.get(c.record, headers=c.specialist.headers)).status_code == 200
        # Someone with no tie to the patient cannot grant themselves access.
        response = await client.post(path, json=body, headers=c.specialist.headers)
        assert response.status_code == 403

    async def test_the_consulting_practitioner_reads_without_consent(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        c = await cast(client, factory)
        await factory.weekly(c.specialist)
        booking = {
            "patient_id": str(c.patient.patient_id),
            "practitioner_id": str(c.specialist.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", "10:00")),
        }
        assert (await client.post("/v1/appointments", json=booking, headers=c.chw.headers)).status_code == 201
        assert (await client.get(c.record, headers=c.specialist.headers)).status_code == 200


class TestBreakGlass:
    async def test_break_glass_is_reasoned_time_limited_and_flagged(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        c = await cast(client, factory)
        stranger = await factory.staff(await factory.facility())
        path = f"/v1/patients/{c.patient.patient_id}/break-glass"
        short = await client.post(path, json={"reason": "urgent"}, headers=stranger.headers)
        assert short.status_code in (400, 422)
        response = await client.post(
            path, json={"reason": "unconscious on arrival, need allergies", "minutes": 30}, headers=stranger.headers
        )
        assert response.status_code == 201, response.text
        entry = await client.get(f"/v1/record/{c.entry_id}", headers=stranger.headers)
        assert entry.status_code == 200, entry.text
        log = (await client.get("/v1/me/access-log", headers=c.patient.headers)).json()["items"]
        flagged = [(e["action"], e["resource_type"]) for e in log if e["break_glass"]]
        assert flagged == [("read", "Observation"), ("break_glass", "Patient")]
        assert all(e["actor_role"] for e in log)
        await db.execute(
            """UPDATE break_glass_grants SET started_at = now() - interval '1 hour',
                                         expires_at = now() - interval '1 second'
               WHERE user_id = $1""",
            stranger.user_id,
        )
        await refused(client, f"/v1/record/{c.entry_id}", stranger)


class TestAccessLog:
    async def test_lists_others_reads_and_pages(self, client: Client, factory: Factory) -> None:
        c = await cast(client, factory)
        for _ in range(3):
            assert (await client.get(f"/v1/record/{c.entry_id}", headers=c.chw.headers)).status_code == 200
        await client.get(c.record, headers=c.patient.headers)  # the patient's own read is not listed
        page = (await client.get("/v1/me/access-log", params={"limit": 2}, headers=c.patient.headers)).json()
        assert [e["action"] for e in page["items"]] == ["read", "read"]
        assert page["items"][0]["facility_id"] == str(c.post)
        rest = (
            await client.get("/v1/me/access-log", params={"before": page["next_before"]}, headers=c.patient.headers)
        ).json()["items"]
        assert "create" in [e["action"] for e in rest]
        staff = await client.get("/v1/me/access-log", headers=c.chw.headers)
        assert staff.json()["code"] == "patient_login_required"


class TestAuditExport:
    async def test_facility_admin_exports_its_events_only(self, client: Client, factory: Factory) -> None:
        c = await cast(client, factory)
        admin = {"Authorization": f"Bearer {await factory.facility_admin(c.post)}"}
        response = await client.get(f"/v1/facilities/{c.post}/audit-events", headers=admin)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert {e["patient_id"] for e in items if e["patient_id"]} == {str(c.patient.patient_id)}
        assert ("create", "Observation") in {(e["action"], e["resource_type"]) for e in items}
        page = await client.get(f"/v1/facilities/{c.post}/audit-events", params={"limit": 1}, headers=admin)
        after = page.json()["next_after"]
        rest = await client.get(f"/v1/facilities/{c.post}/audit-events", params={"after": after}, headers=admin)
        assert [e["id"] for e in rest.json()["items"]][: len(items) - 1] == [e["id"] for e in items[1:]]
        other = await client.get(f"/v1/facilities/{c.centre}/audit-events", headers=admin)
        assert other.status_code == 403
        assert (await client.get(f"/v1/facilities/{c.post}/audit-events", headers=c.chw.headers)).status_code == 403
