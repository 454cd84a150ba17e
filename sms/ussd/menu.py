"""The USSD menu tree, as data: every screen, its numbered options and where each leads.

The same tree serves every language; each screen's words are catalogue entries (sms/locales,
ids `ussd_*`) rendered in the patient's preferred language. A screen has a title, then either
fixed options, a numbered list loaded for this patient (`items`: slots, appointments, ...), or a
free answer (`answer`: a PIN). Choosing leads to another screen (`goto`/`then`) or to an action
that ends the session with its outcome (`action`). Loaders, answers and actions are named here
and implemented in sms.ussd.lists and sms.ussd.actions, which call the same domain functions as
the app.
"""

from __future__ import annotations

from dataclasses import dataclass

MAIN = "main"
WHO = "who"
CHW = "chw"  # a community health worker's main menu


@dataclass(frozen=True)
class Option:
    key: str  # what the patient types
    label: str  # catalogue id
    goto: str | None = None  # the next screen, or
    action: str | None = None  # an action that ends the session (sms.ussd.actions.ACTIONS)
    value: str = ""  # handed to the action


@dataclass(frozen=True)
class Screen:
    title: str  # catalogue id, formatted with the values of `values`
    options: tuple[Option, ...] = ()
    values: str | None = None  # loader of the title's values (sms.ussd.lists.VALUES)
    items: str | None = None  # loader of a numbered list (sms.ussd.lists.ITEMS)
    store: str | None = None  # the choice a picked item is kept under
    then: str | None = None  # the screen after an item is picked
    empty: str | None = None  # catalogue id shown (END) when the list is empty
    answer: str | None = None  # handler of a free answer (sms.ussd.actions.ANSWERS)


def _yes_no(action: str) -> tuple[Option, ...]:
    return (Option("1", "ussd_yes", action=action), Option("2", "ussd_no", goto=MAIN))


SCREENS: dict[str, Screen] = {
    # A shared family phone first says who is using it.
    WHO: Screen("ussd_who", items="patients", store="patient", then=MAIN),
    MAIN: Screen(
        "ussd_main",
        options=(
            Option("1", "ussd_opt_book", goto="book"),
            Option("2", "ussd_opt_appointments", goto="appointments"),
            Option("3", "ussd_opt_consent", goto="consent"),
            Option("4", "ussd_opt_language", goto="language"),
            Option("5", "ussd_opt_results", goto="pin_enter"),
        ),
    ),
    "book": Screen("ussd_book", items="needs", store="need", then="book_slots", empty="ussd_book_none"),
    "book_slots": Screen("ussd_slots", items="free_slots", store="slot", then="book_confirm", empty="ussd_slots_none"),
    "book_confirm": Screen("ussd_book_confirm", values="slot", options=_yes_no("book")),
    "appointments": Screen(
        "ussd_appointments", items="appointments", store="appointment", then="appointment", empty="ussd_none_booked"
    ),
    "appointment": Screen(
        "ussd_appointment",
        values="appointment",
        options=(
            Option("1", "ussd_opt_cancel", goto="cancel_confirm"),
            Option("2", "ussd_opt_move", goto="move_slots"),
        ),
    ),
    "cancel_confirm": Screen("ussd_cancel_confirm", values="appointment", options=_yes_no("cancel")),
    "move_slots": Screen("ussd_slots", items="move_slots", store="slot", then="move_confirm", empty="ussd_slots_none"),
    "move_confirm": Screen("ussd_move_confirm", values="slot", options=_yes_no("move")),
    "consent": Screen(
        "ussd_consent",
        values="consent",
        options=(
            Option("1", "ussd_opt_consent_give", action="consent_give"),
            Option("2", "ussd_opt_consent_withdraw", action="consent_withdraw"),
        ),
    ),
    "language": Screen(
        "ussd_language",
        options=tuple(
            Option(str(n), f"ussd_lang_{code}", action="language", value=code)
            for n, code in enumerate(("km", "vi", "fr", "en"), start=1)
        ),
    ),
    # Results: behind the patient's PIN; the first time, the patient sets one (typed twice).
    "pin_enter": Screen("ussd_pin_enter", values="pin_required", answer="pin_enter"),
    "pin_new": Screen("ussd_pin_new", answer="pin_new"),
    "pin_repeat": Screen("ussd_pin_repeat", answer="pin_repeat"),
    # A CHW on a basic phone acts for the patients of their post, under the app's access rules:
    # find one (phone, ID or name), then book or see their appointments with the patient's own
    # screens; the post's consultations of today and tomorrow; the centre's answers waiting.
    CHW: Screen(
        "ussd_chw_main",
        options=(
            Option("1", "ussd_chw_find", goto="chw_find"),
            Option("2", "ussd_chw_today", goto="chw_today"),
            Option("3", "ussd_chw_answers_opt", goto="chw_answers"),
        ),
    ),
    "chw_find": Screen("ussd_chw_find_any", answer="chw_find"),
    "chw_matches": Screen("ussd_chw_matches", items="matches", store="patient", then="chw_patient"),
    "chw_patient": Screen(
        "ussd_chw_patient",
        values="patient",
        options=(
            Option("1", "ussd_opt_book", goto="book"),
            Option("2", "ussd_opt_appointments", goto="appointments"),
        ),
    ),
    "chw_today": Screen(
        "ussd_chw_consultations",
        items="post_consultations",
        store="appointment",
        then="appointment",
        empty="ussd_chw_none_today",
    ),
    "chw_answers": Screen(
        "ussd_chw_answers",
        items="answers_waiting",
        store="referral",
        then="chw_answer",
        empty="ussd_chw_no_answers",
    ),
    # The answer, then: mark it read (it leaves the post's list, in the app too), or act for the patient.
    "chw_answer": Screen(
        "ussd_chw_answer",
        values="referral_answer",
        options=(
            Option("1", "ussd_chw_ack", action="acknowledge"),
            Option("2", "ussd_chw_for_patient", goto="chw_patient"),
        ),
    ),
}

TOPS = (MAIN, WHO, CHW)  # main menus: no back line
