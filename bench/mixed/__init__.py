"""The day of a reference centre, as requests: what kinds, in what proportions.

Per 100 requests (a guess from how the product is used, written down so it can be argued with):

| kind | share | why |
| --- | --- | --- |
| slot search | 20 | patients and CHWs look at a specialist's days before booking, several looks per booking |
| booking | 4 | with an Idempotency-Key, as phones send them; 1 in 5 searches ends in a booking |
| record read | 24 | every consultation opens the patient's record, and clinicians go back to it |
| record write | 12 | vitals, notes, diagnoses during and after consultations: half as many as reads |
| FHIR search | 10 | the national platform and hospital systems read observations of shared patients |
| sync page | 20 | CHW phones pull changes (100 per page) whenever they find a signal |
| sign-in | 10 | an app opening with an expired access token (15 min) rotates its refresh token |

Reads outnumber writes about 5 to 1, as in Medplum's published mixed benchmark.
"""

from __future__ import annotations

import random

MIX: dict[str, int] = {
    "slot search": 20,
    "booking": 4,
    "record read": 24,
    "record write": 12,
    "fhir search": 10,
    "sync page": 20,
    "sign-in": 10,
}


def day_order(seed: int) -> list[str]:
    """1,000 kinds in MIX's proportions, shuffled: every stretch of the run sees the whole mix."""
    order = [kind for kind, share in MIX.items() for _ in range(share * 10)]
    random.Random(seed).shuffle(order)
    return order
