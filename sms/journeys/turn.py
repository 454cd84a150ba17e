"""What every SMS journey step gets: the turn's connection, the phone and its language, and for
a registered number its login (channel `sms`) and patient."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from domain.principal import Principal
from infra.db import Connection
from sms import texts

NAME_SHOWN = 28  # a practitioner's or facility's name in a list or question, at most


@dataclass(frozen=True)
class Turn:
    conn: Connection
    phone: str
    language: str
    default_region: str
    principal: Principal | None = None
    patient_id: uuid.UUID | None = None

    @property
    def acting(self) -> tuple[Principal, uuid.UUID]:
        """The login and patient of a registered number (journeys past registration need both)."""
        assert self.principal is not None
        assert self.patient_id is not None
        return self.principal, self.patient_id

    def numbered(self, labels: list[str]) -> str:
        """`1) a, 2) b`: a numbered list to answer with a number."""
        return ", ".join(texts.text(self.language, "sms_my_item", n=n, when=label) for n, label in enumerate(labels, 1))


def short(name: str) -> str:
    """A name cut to fit an SMS's segment budget (a name, never a code or a link)."""
    return name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 1].rstrip() + "."
