"""Screenshots of every page Spean serves, for the README: `make screenshots`
(or `python -m docs.screenshots [--out docs/screenshots]`).

Starts a server of its own on a fresh database (a new database on DATABASE_URL's server, dropped
afterwards; without DATABASE_URL, embedded PostgreSQL in a temporary folder; Redis from REDIS_URL,
else embedded) with the demo network (`spean demo`), books the on-call specialist's next three
consultations for demo patients (the first from a referral, with a record, checked in), invites an
interpreter, and drives Debian's Chromium (fake camera and microphone) through each page at phone
size (390x844) and the specialist's workspace at tablet size (1024x768) too: the guest's pre-call
check (on this machine's open link: the "weak link" picture needs a throttled network namespace and
stays the one tests/invitations/test_precall_browser.py makes), a file shared in the call and filed
into the record, then the consultation completed, its report made from the workspace, the PDF's
first page (poppler's pdftoppm) and the patient's PIN page from the report's SMS (a wrong PIN too,
when the database is DATABASE_URL's, where the script sets the demo patient's PIN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from infra.embedded import free_port
from spean.demo import demo_id

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
]
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1024, "height": 768}
ON_CALL, CHW, PATIENT, ADMIN = "+85512000204", "+85512000301", "+85597000001", "+85512000001"


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "spean.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"spean {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


class Api:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 (our own server on loopback)
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return json.loads(answer.read() or b"null")

    def raw(self, method: str, path: str, token: str, data: bytes, content_type: str) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        answer = httpx.request(
            method, self.base + path, content=data, headers={**headers, "Content-Type": content_type}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()

    def download(self, path: str, token: str) -> bytes:
        answer = httpx.get(self.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        answer.raise_for_status()
        return answer.content


def _picture(colour: tuple[int, int, int]) -> bytes:
    """A small PNG to share in the call (a photo of a rash, as far as the picture goes)."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 180), (236, 200, 180))
    draw = ImageDraw.Draw(image)
    for x, y in ((60, 50), (120, 90), (170, 60), (90, 130)):
        draw.ellipse((x - 14, y - 10, x + 14, y + 10), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


RESULTS = {
    "entries": [
        {"kind": "note", "category": "progress", "text": "Irregular pulse on video, no distress."},
        {"kind": "condition", "code": "I48", "display": "Atrial fibrillation"},
        {
            "kind": "prescription",
            "drug": "Bisoprolol",
            "dose": "2.5 mg",
            "route": "oral",
            "frequency": "once a day",
            "duration_days": 60,
        },
        {"kind": "note", "category": "plan", "text": "ECG at the health post this week."},
    ]
}


def _seed(api: Api, tokens: dict[str, str]) -> dict[str, str]:
    """Three consultations with the on-call specialist in the coming hours; the first comes from a
    referral, with a record, and the patient is in the waiting room. Returns ids for the pages."""
    me = api.call("GET", "/v1/me", tokens["specialist"])
    post, centre = str(demo_id("facility", "kc-preychhor")), str(demo_id("facility", "pp-ref"))
    found = api.call("GET", "/v1/patients?name=Sok%20Chantha", tokens["chw"])["items"][0]
    others = [
        p
        for p in api.call("GET", f"/v1/patients?facility_id={post}&limit=5", tokens["chw"])["items"]
        if p["id"] != found["id"]
    ][:2]
    today = datetime.now(UTC).date()
    slots = api.call(
        "GET",
        f"/v1/slots?from={today}&to={today + timedelta(days=1)}&practitioner_id={me['practitioner_id']}&mode=video",
        tokens["chw"],
    )["items"]
    soon = [s for s in slots if datetime.fromisoformat(s["start"].replace("Z", "+00:00")) > datetime.now(UTC)]
    record = f"/v1/patients/{found['id']}/record"
    api.call("POST", record, tokens["chw"], {"kind": "condition", "code": "I10", "display": "Essential hypertension"})
    api.call(
        "POST",
        record,
        tokens["chw"],
        {
            "kind": "prescription",
            "drug": "Amlodipine",
            "dose": "5 mg",
            "route": "oral",
            "frequency": "once a day",
            "duration_days": 30,
        },
    )
    api.call("POST", record, tokens["chw"], {"kind": "observation", "code": "29463-7", "value": 61.5, "unit": "kg"})
    pulse = api.call(
        "POST", record, tokens["chw"], {"kind": "observation", "code": "8867-4", "value": 112, "unit": "/min"}
    )
    referral = api.call(
        "POST",
        "/v1/referrals",
        tokens["chw"],
        {
            "patient_id": found["id"],
            "to_facility_id": centre,
            "specialty": "general_medicine",
            "urgency": "urgent",
            "reason": "Palpitations at rest for two weeks; irregular pulse. Atrial fibrillation?",
            "observation_ids": [pulse["id"]],
        },
    )
    accepted = api.call(
        "POST",
        f"/v1/referrals/{referral['id']}/triage",
        tokens["specialist"],
        {"decision": "accept", "start": soon[0]["start"]},
    )
    first = accepted["appointment_id"]
    for slot, patient in zip(soon[1:3], others, strict=False):
        api.call(
            "POST",
            "/v1/appointments",
            tokens["chw"],
            {
                "patient_id": patient["id"],
                "practitioner_id": me["practitioner_id"],
                "start": slot["start"],
                "mode": "video",
                "reason": "Follow-up",
            },
        )
    api.call("POST", f"/v1/appointments/{first}/check-in", tokens["chw"])
    api.call(
        "POST",
        f"/v1/appointments/{first}/invitations",
        tokens["specialist"],
        {"phone": "+85512999001", "name": "Chan Dara", "role": "interpreter", "language": "km"},
    )
    return {"appointment": first, "patient": found["id"]}


async def _shoot(
    base: str, out: Path, tokens: dict[str, str], ids: dict[str, str], join_link: str | None, api: Api
) -> list[Path]:
    from playwright.async_api import async_playwright

    a = ids["appointment"]
    pages: list[tuple[str, str, dict[str, int], str | None]] = [
        ("consult-patient-phone.png", f"{base}/rtc/consult#token={tokens['patient']}&appointment={a}", PHONE, None),
        (
            "workspace-tablet.png",
            f"{base}/rtc/workspace/en#token={tokens['specialist']}&appointment={a}",
            TABLET,
            "#ws-summary:not([hidden])",
        ),
        (
            "workspace-phone.png",
            f"{base}/rtc/workspace/km#token={tokens['specialist']}&appointment={a}",
            PHONE,
            "#ws-summary:not([hidden])",
        ),
        (
            "consult-specialist-phone.png",
            f"{base}/rtc/consult#token={tokens['specialist']}&appointment={a}",
            PHONE,
            "#waiting li",
        ),
        ("join-guest-phone.png", join_link or f"{base}/join/km", PHONE, None),
        ("dev-phone.png", f"{base}/dev/phone", PHONE, None),
    ]
    saved = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # The patient's page comes first and stays open: the specialist's pages show them waiting.
            patient = await browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
            for name, url, size, ready in pages:
                page = patient if name.startswith("consult-patient") else await browser.new_page(viewport=size)  # type: ignore[arg-type]
                await page.goto(url)
                if ready:
                    await page.wait_for_selector(ready, timeout=15_000)
                await page.wait_for_timeout(1500)  # fonts, the fake camera's first frames
                path = out / name
                await page.screenshot(path=str(path), type="png")
                saved.append(path)
                if page is not patient:  # one specialist page at a time, or they would call each other
                    await page.close()
            saved += await _call_files(browser, base, out, tokens, a, api)
            if join_link:
                saved += await _precall(browser, out, join_link)
        finally:
            await browser.close()
    return saved


async def _call_files(browser: Any, base: str, out: Path, tokens: dict[str, str], a: str, api: Api) -> list[Path]:
    """The specialist's call page at laptop size: a photo the patient shared, filed into the record,
    and one the specialist attached."""
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    await page.goto(f"{base}/rtc/consult#token={tokens['specialist']}&appointment={a}")
    await page.wait_for_selector("#call-file-attach", timeout=15_000)
    await page.wait_for_selector("#waiting li", timeout=15_000)
    shared = await asyncio.to_thread(
        api.raw, "POST", f"/v1/appointments/{a}/files?name=rash.png", tokens["patient"], _picture((200, 60, 60)),
        "image/png",
    )  # fmt: skip
    chip = page.locator(f"#file-{shared['id']}")
    await chip.wait_for(timeout=15_000)
    await page.set_input_files(
        "#call-file-input",
        files=[{"name": "wound-day3.png", "mimeType": "image/png", "buffer": _picture((150, 40, 90))}],
    )
    await page.locator("[id^=file-]", has_text="wound-day3.png").wait_for(timeout=15_000)
    await chip.locator(".file-into-record").click()
    await chip.locator(".file-into-record:disabled").wait_for(timeout=15_000)
    await page.wait_for_timeout(800)
    path = out / "specialist-call-files.png"
    await page.screenshot(path=str(path), type="png")
    await page.close()
    return [path]


async def _precall(browser: Any, out: Path, join_link: str) -> list[Path]:
    """The guest's pre-call check against the server's echo peer, in English, on this machine's
    (open) link: the good outcome. The weak one needs a throttled network (the tests make it)."""
    page = await browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True)
    await page.goto(re.sub(r"/join/\w+#", "/join/en#", join_link))
    await page.click("#join", timeout=15_000)
    await page.wait_for_function(
        "() => ['good', 'weak', 'failed'].includes(document.getElementById('precall').dataset.state)", timeout=60_000
    )
    state = await page.get_attribute("#precall", "data-state")
    await page.wait_for_timeout(500)
    saved = []
    if state == "good":
        path = out / "guest-precall-good-en.png"
        await page.screenshot(path=str(path), type="png")
        saved.append(path)
    else:  # a loaded machine: say so rather than keep a picture that shows the wrong thing
        print(f"the pre-call check found the link {state}: guest-precall-good-en.png left as it was")
    await page.close()
    return saved


async def _report(
    base: str, out: Path, tokens: dict[str, str], ids: dict[str, str], api: Api, log: Path, database: str | None
) -> list[Path]:
    """The consultation completed; the specialist makes its report from the workspace; the PDF's
    first page; the patient's page from the report's SMS link, and a wrong PIN on it."""
    from playwright.async_api import async_playwright

    a = ids["appointment"]
    await asyncio.to_thread(api.call, "POST", f"/v1/appointments/{a}/complete", tokens["specialist"], RESULTS)
    saved = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport=TABLET)  # type: ignore[arg-type]
            await page.goto(f"{base}/rtc/workspace/en#token={tokens['specialist']}&appointment={a}")
            await page.click("#ws-make-report", timeout=15_000)
            await page.wait_for_selector("#ws-report-pdf:not([hidden])", timeout=60_000)
            await page.locator("#ws-report").scroll_into_view_if_needed()
            await page.wait_for_timeout(800)
            saved.append(out / "workspace-report-tablet.png")
            await page.screenshot(path=str(saved[-1]), type="png")
            entry = await page.get_attribute("#ws-report-result", "data-entry")
            await page.close()
            document = await asyncio.to_thread(api.download, f"/v1/record/{entry}/content", tokens["specialist"])
            language = (await asyncio.to_thread(api.call, "GET", f"/v1/record/{entry}", tokens["specialist"]))["body"][
                "language"
            ]
            if first_page := await asyncio.to_thread(_first_page, document, out / f"report-{language}.png"):
                saved.append(first_page)
            written = await asyncio.to_thread(log.read_text, errors="replace")
            links = re.findall(r"(https?://[\w.:\-]+/r/[A-Za-z0-9_-]{16,64})", written)
            if not links:
                print("no report link in the server's log: the PIN pages are left as they were")
                return saved
            page = await browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True)
            await page.goto(links[-1])
            await page.wait_for_selector("input[name=pin]", timeout=15_000)
            saved.append(out / f"report-pin-{language}.png")
            await page.screenshot(path=str(saved[-1]), type="png")
            if database is None:
                print("embedded database: no PIN set, the wrong-PIN page is left as it was")
                return saved
            await _set_pin(database, ids["patient"], "2580")
            await page.fill("input[name=pin]", "1111")
            await page.click("button")
            await page.wait_for_selector(".problem", timeout=15_000)
            saved.append(out / f"report-pin-wrong-{language}.png")
            await page.screenshot(path=str(saved[-1]), type="png")
        finally:
            await browser.close()
    return saved


def _first_page(document: bytes, path: Path) -> Path | None:
    """The PDF's first page as a PNG (poppler's pdftoppm), or None without poppler."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        print("no pdftoppm (apt-get install poppler-utils): the report's picture is left as it was")
        return None
    subprocess.run(  # noqa: S603 (poppler on our own PDF)
        [pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", "-", str(path.with_suffix(""))],
        input=document, check=True,
    )  # fmt: skip
    from PIL import Image, ImageOps

    with Image.open(path) as page:  # the written part of the page, with a margin: the README shows it small
        box = ImageOps.invert(page.convert("L")).getbbox()
        cropped = (
            page.crop((max(box[0] - 12, 0), max(box[1] - 12, 0), box[2] + 12, box[3] + 12)) if box else page.copy()
        )
    cropped.save(path)
    return path


async def _set_pin(database: str, patient_id: str, given: str) -> None:
    """The demo patient's results PIN (a patient sets it on USSD)."""
    from sms.ussd import pin

    conn = await asyncpg.connect(database)
    try:
        await pin.set_pin(conn, uuid.UUID(patient_id), given)
    finally:
        await conn.close()


def _optimise(paths: list[Path]) -> None:
    """Fewer colours, same look: a screenshot of flat UI loses nothing visible at 128 colours."""
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


def _join_link(log: Path) -> str | None:
    found = re.findall(r"(https?://[\w.:\-]+/join/\w+#[^\s\"'\\]+)", log.read_text(errors="replace"))
    return found[-1] if found else None


async def _database(url: str, name: str, create: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", help="where the PNGs go")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="spean-shots-"))
    port = free_port()
    env = {
        **os.environ,
        "SPEAN_DATA_DIR": str(folder),
        "SPEAN_LOG_LEVEL": "info",
        "SPEAN_ENV": "development",
        "SPEAN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SPEAN_WORKER_IN_API": "false",
    }
    server_url = os.environ.get("DATABASE_URL")
    database = f"spean_shots_{uuid.uuid4().hex[:8]}"
    if server_url:
        asyncio.run(_database(server_url, database, create=True))
        env["DATABASE_URL"] = server_url.rsplit("/", 1)[0] + f"/{database}"
    env.setdefault("SPEAN_SECRET_KEY", uuid.uuid4().hex * 2)
    server = None
    try:
        _cli(env, "migrate")
        _cli(env, "demo")
        log = folder / "server.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "spean.cli", "serve", "--port", str(port), "--no-migrate"],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2):  # noqa: S310
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        tokens = {
            role: _cli(env, "admin", "issue-token", "--phone", phone)
            for role, phone in (("specialist", ON_CALL), ("chw", CHW), ("patient", PATIENT), ("admin", ADMIN))
        }
        api = Api(base)
        ids = _seed(api, tokens)
        time.sleep(0.5)  # the invitation SMS goes through the outbox, then the log
        saved = asyncio.run(_shoot(base, out, tokens, ids, _join_link(log), api))
        saved += asyncio.run(_report(base, out, tokens, ids, api, log, env.get("DATABASE_URL") if server_url else None))
        _optimise(saved)
        for path in saved:
            print(f"{path}  {path.stat().st_size // 1024} KiB")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        if server_url:
            asyncio.run(_database(server_url, database, create=False))


if __name__ == "__main__":
    raise SystemExit(main())
