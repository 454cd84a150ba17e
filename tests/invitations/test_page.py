"""The guest's page: one small document per language, every text translated, no data in it, and
a Content-Security-Policy that lets only its own inline script and style run."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources

from babel.messages.pofile import read_po
from litestar import Litestar
from litestar.testing import AsyncTestClient

from realtime.guest_page import LANGUAGES, texts

Client = AsyncTestClient[Litestar]


def _messages(language: str) -> dict[str, str]:
    with (resources.files("realtime") / "locales" / f"{language}.po").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh, locale=language) if m.id}


def test_every_text_of_the_page_is_translated_into_every_language() -> None:
    english = _messages("en")
    assert english
    for language in LANGUAGES:
        translated = _messages(language)
        assert sorted(k for k in english if not translated.get(k)) == [], language
        assert set(translated) <= set(english), language
        for key, text in translated.items():  # the same placeholders as English
            assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", english[key])), (language, key)


async def test_the_page_comes_in_the_guests_language_with_a_strict_policy(client: Client) -> None:
    for path, language, title in [
        ("/join/km", "km", "ការពិគ្រោះតាមវីដេអូ"),
        ("/join/vi", "vi", "Khám bệnh từ xa"),
        ("/join/fr", "fr", "Téléconsultation"),
        ("/join/en", "en", "Video consultation"),
        ("/join/xx", "en", "Video consultation"),  # any other language: English
        ("/join", "en", "Video consultation"),
    ]:
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        page = answer.text
        assert f'<html lang="{language}">' in page
        assert f"<title>Spean — {title}</title>" in page
        texts = json.loads(re.search(r'<script type="application/json" id="texts">(.*?)</script>', page, re.S)[1])  # type: ignore[index]
        assert texts == {**_messages("en"), **_messages(language)}
        policy = answer.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy
        assert "'unsafe-eval'" not in policy
        assert "frame-ancestors 'none'" in policy
        scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
        assert len(scripts) == 1
        digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
        assert f"script-src 'sha256-{digest}'" in policy
        assert len(answer.content) < 24_000  # one request, small enough for a 2G link


async def test_the_pre_call_check_is_served_with_its_texts(client: Client) -> None:
    script = await client.get("/rtc/precall.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "SpeanPrecall" in script.text
    assert (await client.get("/rtc/precall.css")).headers["content-type"].startswith("text/css")
    missing = await client.get("/rtc/other.js")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    km = (await client.get("/rtc/precall-texts/km")).json()
    assert km["precall_weak"] == texts("km")["precall_weak"]
    assert set(km) == {k for k in texts("en") if k.startswith("precall_")}
    assert (await client.get("/rtc/precall-texts/xx")).json()["precall_join"] == "Join the call"
    # The guest's page may load them (its policy allows the server's own script and style).
    policy = (await client.get("/join/km")).headers["content-security-policy"]
    assert "'self'" in policy.split("script-src", 1)[1].split(";", 1)[0]
