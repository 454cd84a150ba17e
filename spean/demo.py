"""`spean demo`: a realistic demo network, loaded idempotently (fixed ids, upserts).

A national reference centre in Phnom Penh, health posts in Kampong Cham and Takeo provinces, a
reference hospital in Hanoi, their staff, patients with Khmer and Vietnamese names (each phone
with its login, so `spean admin issue-token --phone <patient phone>` works), weekly availability
for the specialists, and an on-call specialist available every day around the clock, so that a
consultation can be booked, and its video room opened, whenever the demo is tried.

Demo phones already held by another account are left alone (reported), never taken over.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import asyncpg
import msgspec

from domain.patients import HumanName, search_text_of
from infra import db, pooling
from infra.config import Settings

_NS = uuid.UUID("5bea9000-0000-4000-8000-000000000000")


def demo_id(kind: str, key: str) -> uuid.UUID:
    return uuid.uuid5(_NS, f"{kind}:{key}")


@dataclass(frozen=True)
class _Facility:
    key: str
    name: str
    kind: str
    timezone: str
    country: str
    province: str
    lat: float
    lon: float


FACILITIES = (
    _Facility(
        "pp-ref",
        "Phnom Penh National Reference Centre",
        "reference_centre",
        "Asia/Phnom_Penh",
        "KH",
        "Phnom Penh",
        11.5564,
        104.9282,
    ),
    _Facility(
        "kc-preychhor",
        "Prey Chhor Health Post",
        "health_post",
        "Asia/Phnom_Penh",
        "KH",
        "Kampong Cham",
        12.0700,
        105.2300,
    ),
    _Facility("tk-bati", "Bati Health Post", "health_post", "Asia/Phnom_Penh", "KH", "Takeo", 11.2000, 104.8200),
    _Facility(
        "hn-ref", "Hanoi Reference Hospital", "reference_centre", "Asia/Ho_Chi_Minh", "VN", "Ha Noi", 21.0285, 105.8542
    ),
)
REFERRALS = (("kc-preychhor", "pp-ref"), ("tk-bati", "pp-ref"), ("pp-ref", "hn-ref"))


@dataclass(frozen=True)
class _Staff:
    key: str
    phone: str
    name: str
    facility: str
    roles: tuple[str, ...]
    specialties: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("km", "en")


ON_CALL = _Staff(
    "dr-oncall",
    "+85512000204",
    "Dr. Ouk Rachana",
    "pp-ref",
    ("specialist",),
    ("general_medicine",),
    ("km", "en", "fr"),
)
STAFF = (
    _Staff("admin-pp", "+85512000101", "Sok Dara (facility admin)", "pp-ref", ("facility_admin",)),
    _Staff(
        "dr-chan", "+85512000201", "Dr. Chan Sophea", "pp-ref", ("specialist",), ("cardiology",), ("km", "en", "fr")
    ),
    _Staff("dr-keo", "+85512000202", "Dr. Keo Vannak", "pp-ref", ("specialist",), ("paediatrics",), ("km", "en")),
    _Staff("dr-lim", "+85512000203", "Dr. Lim Bopha", "pp-ref", ("specialist",), ("dermatology",), ("km", "fr")),
    _Staff("chw-srey", "+85512000301", "Srey Mom (CHW)", "kc-preychhor", ("chw",), (), ("km",)),
    _Staff("nurse-rith", "+85512000302", "Rith Pisey (nurse)", "kc-preychhor", ("clinician",), (), ("km", "en")),
    _Staff("chw-vuthy", "+85512000303", "Vuthy Sokha (CHW)", "tk-bati", ("chw",), (), ("km",)),
    _Staff(
        "dr-nguyen",
        "+84912000401",
        "BS. Nguyễn Thị Lan",
        "hn-ref",
        ("specialist",),
        ("endocrinology",),
        ("vi", "en", "fr"),
    ),
    ON_CALL,
)
SYSTEM_ADMIN_PHONE = "+85512000001"


@dataclass(frozen=True)
class _Patient:
    key: str
    names: tuple[HumanName, ...]
    birth: str  # YYYY-MM-DD or YYYY
    sex: str
    phone: str | None
    language: str
    channel: str
    facility: str
    health_id: str


def _km(khmer: str, latin: str) -> tuple[HumanName, ...]:
    return (HumanName(text=khmer, lang="km"), HumanName(text=latin, lang="km-Latn", use="usual"))


PATIENTS = (
    _Patient(
        "p1",
        _km("សុខ ចន្ថា", "Sok Chantha"),
        "1968-03-14",
        "female",
        "+85597000001",
        "km",
        "sms",
        "kc-preychhor",
        "KH-HID-1000001",
    ),
    _Patient(
        "p2",
        _km("ហេង សំណាង", "Heng Samnang"),
        "1955",
        "male",
        "+85597000002",
        "km",
        "ussd",
        "kc-preychhor",
        "KH-HID-1000002",
    ),
    _Patient(
        "p3",
        _km("ចាន់ ស្រីនាង", "Chan Sreyneang"),
        "2019-07-02",
        "female",
        "+85597000003",
        "km",
        "app",
        "kc-preychhor",
        "KH-HID-1000003",
    ),
    _Patient(
        "p4",
        _km("គឹម វិចិត្រ", "Kim Vichet"),
        "1981-11-30",
        "male",
        "+85597000004",
        "km",
        "sms",
        "tk-bati",
        "KH-HID-1000004",
    ),
    _Patient(
        "p5",
        _km("ម៉ៅ សុភាព", "Mao Sopheap"),
        "1990-01-21",
        "female",
        "+85597000004",
        "km",
        "sms",
        "tk-bati",
        "KH-HID-1000005",
    ),
    _Patient(
        "p6",
        (HumanName(text="Trần Văn Minh", family="Trần", given=["Văn", "Minh"], lang="vi"),),
        "1972-05-09",
        "male",
        "+84912000501",
        "vi",
        "app",
        "hn-ref",
        "VN-BHYT-DN4010000001",
    ),
    _Patient(
        "p7",
        (HumanName(text="Phạm Thị Hoa", family="Phạm", given=["Thị", "Hoa"], lang="vi"),),
        "1964",
        "female",
        "+84912000502",
        "vi",
        "sms",
        "hn-ref",
        "VN-BHYT-DN4010000002",
    ),
)

# Mornings and afternoons, Monday to Friday, 20-minute slots, in each facility's local time.
_WEEK = [(day, time(8, 0), time(11, 40), 20) for day in range(1, 6)] + [
    (day, time(14, 0), time(17, 0), 20) for day in range(1, 6)
]
# On call: every day, 15-minute slots from midnight to 23:45 (a rule ends within its day), so a
# free slot always starts within the next half hour.
_ROUND_THE_CLOCK = [(day, time(0, 0), time(23, 45), 15) for day in range(1, 8)]


async def load_demo(database_url: str, settings: Settings) -> str:
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        await db.init_connection(conn)
        async with conn.transaction():
            skipped = await _load(conn)
    finally:
        await conn.close()
    lines = [
        "Demo network loaded (idempotent: run again at will).",
        f"  system admin      {SYSTEM_ADMIN_PHONE}",
        *(f"  {s.roles[0]:<17} {s.phone}  {s.name}  @ {s.facility}" for s in STAFF),
        *(f"  patient           {p.phone}  {p.names[-1].text}" for p in PATIENTS if p.phone),
        f"  on call around the clock, every day: {ON_CALL.phone}  {ON_CALL.name}, specialty {ON_CALL.specialties[0]}",
        *(f"  skipped {phone}: it belongs to another account, left unchanged" for phone in skipped),
        'Sign in: POST /v1/auth/otp {"phone": ...}; the code is written to the server log.',
        f"Or: spean admin issue-token --phone {ON_CALL.phone}   (a patient: --phone {PATIENTS[0].phone})",
        "Without a phone: open /dev/phone on the development server to text and dial USSD as these numbers.",
    ]
    return "\n".join(lines)


async def _own_account(conn: asyncpg.Connection, user_id: uuid.UUID, phone: str, name: str) -> bool:
    """The demo's account for `phone`: created if missing; False if another account holds it."""
    await conn.execute(
        "INSERT INTO users (id, phone, display_name) VALUES ($1, $2, $3) ON CONFLICT (phone) DO NOTHING",
        user_id,
        phone,
        name,
    )
    holder = await conn.fetchval("SELECT id FROM users WHERE phone = $1", phone)
    return bool(holder == user_id)


async def _load(conn: asyncpg.Connection) -> list[str]:
    """Load the network; the phones skipped because another account holds them."""
    skipped: list[str] = []
    for f in FACILITIES:
        await conn.execute(
            """INSERT INTO facilities (id, name, kind, timezone, country, province, latitude, longitude)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING""",
            demo_id("facility", f.key),
            f.name,
            f.kind,
            f.timezone,
            f.country,
            f.province,
            f.lat,
            f.lon,
        )
    for source, target in REFERRALS:
        await conn.execute(
            "INSERT INTO referral_links VALUES ($1, $2) ON CONFLICT DO NOTHING",
            demo_id("facility", source),
            demo_id("facility", target),
        )
    if await _own_account(conn, demo_id("user", "sysadmin"), SYSTEM_ADMIN_PHONE, "System administrator"):
        await conn.execute("UPDATE users SET is_system_admin = true WHERE id = $1", demo_id("user", "sysadmin"))
    else:
        skipped.append(SYSTEM_ADMIN_PHONE)
    # Yesterday (UTC): every facility's local today is covered, whatever the hour and time zone.
    valid_from = datetime.now(UTC).date() - timedelta(days=1)
    for s in STAFF:
        user_id = demo_id("user", s.key)
        facility_id = demo_id("facility", s.facility)
        if not await _own_account(conn, user_id, s.phone, s.name):
            skipped.append(s.phone)
            continue
        for role in s.roles:
            await conn.execute(
                "INSERT INTO memberships VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", user_id, facility_id, role
            )
        if "facility_admin" in s.roles:
            continue
        practitioner_id = demo_id("practitioner", s.key)
        await conn.execute(
            """INSERT INTO practitioners (id, user_id, name, specialties, languages)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING""",
            practitioner_id,
            user_id,
            s.name,
            list(s.specialties),
            list(s.languages),
        )
        if "specialist" in s.roles and not await conn.fetchval(
            "SELECT 1 FROM availability_rules WHERE practitioner_id = $1 LIMIT 1", practitioner_id
        ):
            week = _ROUND_THE_CLOCK if s is ON_CALL else _WEEK
            await conn.executemany(
                """INSERT INTO availability_rules (id, practitioner_id, facility_id, weekday, start_local, end_local,
                                                   slot_minutes, modes, valid_from)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, '{video,audio,async}', $8)""",
                [
                    (demo_id("rule", f"{s.key}:{day}:{start}"), practitioner_id, facility_id, day, start, end, minutes,
                     valid_from)
                    for day, start, end, minutes in week
                ],
            )  # fmt: skip
    for p in PATIENTS:
        patient_id = demo_id("patient", p.key)
        birth_date = datetime.strptime(p.birth, "%Y-%m-%d").date() if len(p.birth) == 10 else None
        names = list(p.names)
        inserted = await conn.fetchval(
            """INSERT INTO patients (id, names, search_text, birth_date, birth_year, sex, phone, preferred_language,
                                     preferred_channel, home_facility_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING RETURNING 1""",
            patient_id,
            msgspec.to_builtins(names),
            search_text_of(names),
            birth_date,
            int(p.birth[:4]),
            p.sex,
            p.phone,
            p.language,
            p.channel,
            demo_id("facility", p.facility),
        )
        if inserted:
            system = p.health_id.rsplit("-", 1)[0].lower()
            await conn.execute(
                "INSERT INTO patient_identifiers VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                patient_id,
                f"urn:spean:id:{system}",
                p.health_id,
            )
    # Each patient phone gets its login now, as its first sign-in would: linked to every patient
    # registered with it (p4 and p5 share a family phone). An account already holding the phone
    # is that phone's login: linking it is what signing in does anyway.
    for phone in dict.fromkeys(p.phone for p in PATIENTS if p.phone):
        await conn.execute(
            "INSERT INTO users (id, phone) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING",
            demo_id("user", f"patient:{phone}"),
            phone,
        )
        await conn.execute(
            """INSERT INTO patient_accounts (user_id, patient_id)
               SELECT u.id, p.id FROM users u JOIN patients p ON p.phone = u.phone
               WHERE u.phone = $1 ON CONFLICT DO NOTHING""",
            phone,
        )
    return skipped
