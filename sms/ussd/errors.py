"""Domain errors as USSD texts: the one mapping for this channel, by the error's stable code,
else by its kind (as api.errors does for HTTP). The patient reads why, in their language."""

from __future__ import annotations

from domain.errors import DomainError, ErrorKind

BY_CODE = {
    "slot_taken": "ussd_err_slot_taken",
    "slot_unavailable": "ussd_err_slot_taken",
    "start_in_past": "ussd_err_slot_taken",
    "patient_double_booked": "ussd_err_double_booked",
    "invalid_status": "ussd_err_invalid_status",
    "already_revoked": "ussd_err_invalid_status",
}
BY_KIND = {
    ErrorKind.INVALID: "ussd_err_invalid",
    ErrorKind.UNAUTHENTICATED: "ussd_err_denied",
    ErrorKind.FORBIDDEN: "ussd_err_denied",
    ErrorKind.NOT_FOUND: "ussd_err_not_found",
    ErrorKind.CONFLICT: "ussd_err_conflict",
    ErrorKind.RATE_LIMITED: "ussd_err_unavailable",
    ErrorKind.UNAVAILABLE: "ussd_err_unavailable",
}


def message_of(error: DomainError) -> str:
    """The catalogue id of the END text that tells the patient what went wrong."""
    return BY_CODE.get(error.code) or BY_KIND[error.kind]
