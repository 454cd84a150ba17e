"""The printable prescription: one HTML page (A5 by default, A4 on request) in the patient's
language, with the prescription code written out and as a QR code of its verification URL.

The QR code is a PNG made by segno (pure Python) and inlined as a data URI, so the page prints
the same offline and from a browser that blocks remote images. The instant it was written is
shown in the prescribing facility's time zone."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import segno

from api.prescriptions.texts import text
from domain.prescriptions.service import Verified

Paper = Literal["A5", "A4"]


def verification_url(base: str, display_code: str) -> str:
    return f"{base.rstrip('/')}/v1/prescriptions/{display_code}"


def qr_png(data: str) -> bytes:
    # Level M survives a crease or a smudge (15%); scale 4 with a 4-module quiet zone scans from paper.
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="png", scale=4, border=4)
    return out.getvalue()


def _local(moment: datetime, zone: str | None) -> str:
    tz = ZoneInfo(zone) if zone else None
    shown = moment.astimezone(tz) if tz else moment
    return shown.strftime("%Y-%m-%d %H:%M") + (f" ({zone})" if zone else " UTC")


def render(rx: Verified, *, base_url: str, paper: Paper = "A5") -> str:
    lang = rx.patient_language
    e = html.escape
    body = rx.entry.body

    def t(key: str, **values: object) -> str:
        return e(text(lang, key, **values))

    rows = [
        (t("rx_patient"), e(rx.patient_name)),
        (t("rx_prescriber"), e(rx.prescriber_name or "")),
    ]
    if rx.patient_birth:
        rows.insert(1, (t("rx_birth"), e(rx.patient_birth)))
    if licence := body.get("prescriber_licence"):
        rows.append((t("rx_licence"), e(licence["value"])))
    rows.append((t("rx_facility"), e(rx.facility_name or "")))
    if facility := body.get("facility_code"):
        rows.append((t("rx_facility_code"), e(facility["value"])))
    rows.append((t("rx_written"), e(_local(rx.entry.provenance.recorded_at, rx.facility_timezone))))
    medicine = [
        (t("rx_medicine"), e(body["drug"]) + (f" ({e(body['drug_code'])})" if body.get("drug_code") else "")),
        (t("rx_dose"), e(body["dose"])),
        (t("rx_route"), t(f"rx_route_{body['route']}")),
        (t("rx_frequency"), e(body["frequency"])),
        ("", t("rx_duration", days=body["duration_days"])),
    ]
    if body.get("instructions"):
        medicine.append((t("rx_instructions"), e(body["instructions"])))
    url = verification_url(base_url, rx.display_code)
    qr = base64.b64encode(qr_png(url)).decode()
    cancelled = f'<p class="cancelled">{t("rx_entered_in_error")}</p>' if rx.entry.status == "entered_in_error" else ""

    def table(items: list[tuple[str, str]]) -> str:
        return "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)

    return f"""<!doctype html>
<html lang="{e(lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t("rx_title")} {e(rx.display_code)}</title>
<style>
@page {{ size: {paper}; margin: 12mm; }}
body {{ font-family: "Noto Sans", "Noto Sans Khmer", "Khmer OS", sans-serif; font-size: 11pt; color: #000; }}
h1 {{ font-size: 16pt; margin: 0 0 4mm; }}
.code {{ font-family: monospace; font-size: 14pt; letter-spacing: 1px; }}
table {{ border-collapse: collapse; width: 100%; margin: 3mm 0; }}
th {{ text-align: left; padding: 1mm 3mm 1mm 0; width: 35%; vertical-align: top; }}
td {{ padding: 1mm 0; }}
.qr {{ float: right; width: 32mm; height: 32mm; image-rendering: pixelated; }}
.cancelled {{ border: 2px solid #000; padding: 2mm; font-weight: bold; }}
</style></head>
<body>
<img class="qr" alt="{e(url)}" src="data:image/png;base64,{qr}">
<h1>{t("rx_title")}</h1>
<p>{t("rx_code")}: <span class="code">{e(rx.display_code)}</span></p>
{cancelled}
<table>{table(rows)}</table>
<table>{table(medicine)}</table>
<p>{t("rx_scan")}<br><small>{e(url)}</small></p>
</body></html>
"""
