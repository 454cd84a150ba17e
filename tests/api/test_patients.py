"""Patients: registration in any script, search by identifier, phone and name, versioned updates."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth, new_phone

Client = AsyncTestClient[Litestar]


class TestRegistration:
    async def test_chw_registers_a_patient_with_khmer_and_latin_names(self, client: Client, factory: Factory) -> None:
        post = await factory.facility(kind="health_post")
        chw = await factory.staff(post, role="chw")
        phone = new_phone()
        body = {
            "names": [{"text": "សុខ ចន្ថា", "lang": "km"}, {"text": "Sok Chantha", "lang": "km-Latn", "use": "usual"}],
            "home_facility_id": str(post),
            "birth_date": "1968-03-14",
            "sex": "female",
            "phone": "0" + phone.removeprefix("+855"),
            "preferred_language": "km",
            "preferred_channel": "sms",
            "identifiers": [{"system": "urn:kh:hid", "value": f"HID-{phone[-7:]}"}],
        }
        created = await client.post("/v1/patients", json=body, headers=chw.headers)
        assert created.status_code == 201, created.text
        patient = created.json()
        assert patient["phone"] == phone
        assert patient["birth_year"] == 1968
        assert patient["names"][0]["text"] == "សុខ ចន្ថា"
        assert patient["version"] == 1

        for params in (
            {"name": "ចន្ថា"},
            {"name": "sok chan"},
            {"phone": phone},
            {"identifier": f"urn:kh:hid|HID-{phone[-7:]}"},
            {"identifier": f"HID-{phone[-7:]}"},
        ):
            found = (await client.get("/v1/patients", params=params, headers=chw.headers)).json()["items"]
            assert [p["id"] for p in found] == [patient["id"]], params

    async def test_birth_year_only_and_bad_dates(self, client: Client, factory: Factory) -> None:
        post = await factory.facility(kind="health_post")
        chw = await factory.staff(post, role="chw")
        base = {"names": [{"text": "Heng Samnang"}], "home_facility_id": str(post)}
        year_only = await client.post("/v1/patients", json={**base, "birth_year": 1955}, headers=chw.headers)
        assert year_only.status_code == 201
        assert year_only.json()["birth_date"] is None
        future = await client.post("/v1/patients", json={**base, "birth_date": "2150-01-01"}, headers=chw.headers)
        assert future.status_code == 422
        assert future.json()["code"] == "birth_date_in_future"
        mismatch = await client.post(
            "/v1/patients", json={**base, "birth_date": "1990-01-01", "birth_year": 1991}, headers=chw.headers
        )
        assert mismatch.json()["code"] == "birth_year_mismatch"
        no_name = await client.post("/v1/patients", json={**base, "names": []}, headers=chw.headers)
        assert no_name.json()["code"] == "name_required"
        bad_phone = await client.post("/v1/patients", json={**base, "phone": "+855 1"}, headers=chw.headers)
        assert bad_phone.json()["code"] == "invalid_phone"

    async def test_identifiers_are_unique(self, client: Client, factory: Factory) -> None:
        post = await factory.facility(kind="health_post")
        chw = await factory.staff(post, role="chw")
        ident = [{"system": "urn:kh:hid", "value": new_phone()}]
        body = {"names": [{"text": "A"}], "home_facility_id": str(post), "identifiers": ident}
        first = await client.post("/v1/patients", json=body, headers=chw.headers)
        assert first.status_code == 201
        # Registration finds the holder first (domain.identifiers.matching) and names them...
        again = await client.post("/v1/patients", json=body, headers=chw.headers)
        assert again.status_code == 409
        assert again.json()["code"] == "duplicate_patient"
        assert again.json()["extra"]["existing_patient_id"] == first.json()["id"]
        # ...and the key refuses any other way of taking it.
        other = await client.post("/v1/patients", json={**body, "identifiers": []}, headers=chw.headers)
        taken = await client.patch(
            f"/v1/patients/{other.json()['id']}", json={"identifiers": ident}, headers=chw.headers
        )
        assert taken.status_code == 409
        assert taken.json()["code"] == "identifier_taken"

    async def test_a_patient_login_registers_a_family_member_on_its_phone(
        self, client: Client, factory: Factory
    ) -> None:
        post = await factory.facility(kind="health_post")
        login = await factory.patient_login(post)  # sign-in is for known numbers only
        token = login.token
        body = {"names": [{"text": "Ngoc"}], "home_facility_id": str(post), "preferred_language": "vi"}
        created = await client.post("/v1/patients", json=body, headers=auth(token))
        assert created.status_code == 201, created.text
        me = (await client.get("/v1/me", headers=auth(token))).json()
        assert sorted(me["patient_ids"]) == sorted([str(login.patient_id), created.json()["id"]])
        other_phone = await client.post("/v1/patients", json={**body, "phone": new_phone()}, headers=auth(token))
        assert other_phone.status_code == 403
        assert other_phone.json()["code"] == "phone_mismatch"


class TestUpdate:
    async def test_versioned_update_with_if_match(self, client: Client, factory: Factory) -> None:
        post = await factory.facility(kind="health_post")
        chw = await factory.staff(post, role="chw")
        patient_id = await factory.patient(post, token=chw.token)
        url = f"/v1/patients/{patient_id}"
        changed = await client.patch(url, json={"preferred_channel": "ussd"}, headers={**chw.headers, "If-Match": "1"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 2
        assert changed.json()["preferred_channel"] == "ussd"
        stale = await client.patch(url, json={"sex": "male"}, headers={**chw.headers, "If-Match": "1"})
        assert stale.status_code == 409
        assert stale.json()["code"] == "version_mismatch"
