"""Patient-facing texts, from the gettext catalogues in sms/locales (km, vi, fr, en).

Catalogues are read with babel once per process; a message missing from a language falls back to
English, never to a blank text.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

LANGUAGES = ("km", "vi", "fr", "en")
FALLBACK = "en"

# The language a new number most likely reads, by its country calling code.
_BY_CALLING_CODE = {"855": "km", "84": "vi"}
_FRANCOPHONE = {
    "221",
    "223",
    "224",
    "225",
    "226",
    "227",
    "228",
    "229",
    "235",
    "236",
    "237",
    "241",
    "242",
    "243",
    "250",
    "257",
    "261",
    "33",
}


@cache
def _catalogue(language: str) -> dict[str, str]:
    path = resources.files("sms") / "locales" / f"{language}.po"
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def text(language: str, message_id: str, **values: object) -> str:
    if language not in LANGUAGES:
        language = FALLBACK
    template = _catalogue(language).get(message_id) or _catalogue(FALLBACK).get(message_id)
    if template is None:
        raise KeyError(f"no catalogue entry for {message_id!r}")
    return template.format(**values)


def language_for_phone(e164: str) -> str:
    digits = e164.lstrip("+")
    for code in sorted(_BY_CALLING_CODE, key=len, reverse=True):
        if digits.startswith(code):
            return _BY_CALLING_CODE[code]
    if any(digits.startswith(code) for code in _FRANCOPHONE):
        return "fr"
    return FALLBACK


# Segment budget of every SMS template (USSD screens, `ussd_*`, have their own 182-character
# rule), with the longest values a placeholder takes in practice; tests/sms/test_texts.py renders
# each in every language and checks it stays within its budget.
BUDGETS: dict[str, int] = {
    "login_code": 2,
    "sms_help": 2,
    "sms_stopped": 2,
    "sms_started": 1,
    "sms_my_none": 1,
    "sms_my_list": 3,
    "sms_my_item": 1,
    "sms_cancelled": 1,
    "sms_cancel_unknown": 1,
    "sms_cancel_refused": 1,
    "sms_unknown_number": 1,
    "sms_result_ready": 2,
    "sms_result_detail": 4,
    "sms_move_offer": 2,
    "sms_moved": 1,
    "sms_move_none": 2,
    "sms_move_taken": 2,
    "sms_move_kept": 1,
    # Booking, consent and registration by SMS (sms/journeys/)
    "sms_help_new": 2,
    "sms_book_needs": 3,
    "sms_referral_item": 1,
    "sms_book_slots": 3,
    "sms_book_none": 2,
    "sms_book_no_slots": 2,
    "sms_book_confirm": 2,
    "sms_booked": 3,
    "sms_book_taken": 3,
    "sms_book_dropped": 1,
    "sms_book_refused": 2,
    "sms_choose_number": 1,
    "sms_consent_given": 2,
    "sms_consent_already": 2,
    "sms_withdraw_confirm": 2,
    "sms_withdrawn": 2,
    "sms_withdraw_kept": 1,
    "sms_consent_none": 2,
    "sms_register_name": 1,
    "sms_register_birth_year": 1,
    "sms_register_village": 1,
    "sms_register_post": 1,
    "sms_register_post_choice": 3,
    "sms_register_no_post": 2,
    "sms_registered": 3,
    "sms_register_duplicate": 2,  # fhir-national: a registration that finds the person registered
    # Notifications (notifications/plan.py), sent by SMS when no push reaches the person.
    "push_title": 1,
    "booked_patient": 2,
    "booked_staff": 2,
    "moved_patient": 2,
    "moved_staff": 2,
    "cancelled_patient": 2,
    "cancelled_staff": 2,
    "call_ready": 2,
    "reminder": 2,
    "referral_answered": 2,
    "result_ready_staff": 2,  # the patient's "result ready" is sms_result_ready
    # A guest's invitation into a video consultation (sms/invitation.py), with its link.
    "invite_family_member": 3,
    "invite_interpreter": 3,
    "invite_specialist": 3,
    # A consultation's report (consult_reports/): the patient's link, and the health post's notice.
    "report_link": 3,
    "report_ready_staff": 2,
}
SAMPLE_VALUES: dict[str, object] = {
    "code": "000000",
    "minutes": 10,
    "items": "1) 2026-12-05 09:30, 2) 2026-12-06 14:00, 3) 2026-12-09 08:15, 4) 2026-12-10 10:45, 5) 2026-12-11 16:30",
    "when": "2026-12-05 09:30",
    "new": "2026-12-06 14:00",
    "n": 5,
    "detail": "x" * 120,
    # Names are cut to sms.journeys.turn.NAME_SHOWN (28) characters; specialties are short codes.
    "specialty": "x" * 24,
    "doctor": "x" * 28,
    "facility": "x" * 28,
    "name": "x" * 28,
    "post": "x" * 28,
}
# Where one template's list is longer than SAMPLE_VALUES' (the free times offered by SMS are 4).
SAMPLES_FOR: dict[str, dict[str, object]] = {
    "sms_book_slots": {"items": "1) 2026-12-05 09:30, 2) 2026-12-06 14:00, 3) 2026-12-09 08:15, 4) 2026-12-10 10:45"},
    "sms_book_taken": {"items": "1) 2026-12-05 09:30, 2) 2026-12-06 14:00, 3) 2026-12-09 08:15, 4) 2026-12-10 10:45"},
    "sms_book_needs": {"items": ", ".join(f"{n}) {'x' * 14}" for n in range(1, 7))},
    "sms_register_post_choice": {"items": ", ".join(f"{n}) {'x' * 28}" for n in range(1, 5))},
    # The start with its UTC offset (sms.invitation.when), and the link on a 25-character base URL
    # (a UCS-2 segment holds a link on a base URL of up to 38 characters whole: it comes first).
    **{
        f"invite_{role}": {"when": "x" * 30, "link": "https://spean.example.org/join/km#" + "x" * 22}
        for role in ("family_member", "interpreter", "specialist")
    },
    "report_link": {"link": "https://spean.example.org/r/" + "x" * 32},
}


def sample(template: str) -> dict[str, object]:
    """The longest values `template` is sent with, to check its budget."""
    return {**SAMPLE_VALUES, **SAMPLES_FOR.get(template, {})}


def message_ids(language: str) -> list[str]:
    return sorted(_catalogue(language))
