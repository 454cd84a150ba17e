"""CONSENT and WITHDRAW by SMS, through the app's consent service as the number's login (so the
consent is recorded with method `sms` and audited with channel `sms`).

CONSENT lets the patient's referral network read the record (the app's `network` scope, at the
patient's health post) unless it already may. WITHDRAW asks YES/NO first, then revokes every
consent still in force: a patient who says "stop sharing" by SMS cannot pick among scopes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.consent import service as consent
from sms.conversation import AskWithdraw, Reply, attempt
from sms.journeys.turn import Turn


async def _in_force(turn: Turn, patient_id: uuid.UUID) -> list[consent.Consent]:
    principal, _ = turn.acting
    now = datetime.now(UTC)
    return [
        c
        for c in await consent.list_for_patient(turn.conn, principal, patient_id)
        if c.revoked_at is None and (c.expires_at is None or c.expires_at > now)
    ]


async def give(turn: Turn) -> Reply:
    principal, patient_id = turn.acting
    if any(c.scope == "network" for c in await _in_force(turn, patient_id)):
        return Reply("sms_consent_already")
    await consent.grant(turn.conn, principal, patient_id, consent.ConsentIn(scope="network"))
    return Reply("sms_consent_given")


async def ask_withdraw(turn: Turn) -> Reply:
    _, patient_id = turn.acting
    if not await _in_force(turn, patient_id):
        return Reply("sms_consent_none")
    return Reply("sms_withdraw_confirm", {}, AskWithdraw(patient_id))


async def withdraw(turn: Turn, question: AskWithdraw, *, yes: bool) -> Reply:
    if not yes:
        return Reply("sms_withdraw_kept")
    principal, _ = turn.acting
    for given in await _in_force(turn, question.patient_id):
        # One revoked meanwhile (the app, USSD) is fine: it is what the patient asked.
        await attempt(consent.revoke(turn.conn, principal, given.id, "withdrawn by SMS"), turn.conn)
    return Reply("sms_withdrawn")
