"""The consultation report as a PDF (A4), in the patient's language, laid out by fpdf2 with text
shaping by HarfBuzz: Khmer's stacked consonants and vowels placed before or above their consonant
only come out right when shaped. Times are on the consultation facility's clock.

Rendering is CPU work of a few tens of milliseconds: callers run it in a thread.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from fpdf import FPDF

from consult_reports import fonts
from consult_reports.texts import text
from domain.record.report import ReportContent

_BODY = 11
_HEADING = 14
_LINE = 6.5


class _Report(FPDF):
    def __init__(self, language: str) -> None:
        super().__init__(format="A4")
        self.language = language
        self.set_margins(18, 18, 18)
        self.set_auto_page_break(auto=True, margin=18)
        self.add_font("latin", fname=str(fonts.latin()))
        if language == "km":
            # Khmer first, Latin for whatever the Khmer font lacks (drug names, codes, dashes).
            self.add_font("khmer", fname=str(fonts.khmer()))
            self.main = "khmer"
            self.set_fallback_fonts(["latin"])
        else:
            self.main = "latin"
            # A name or a note in Khmer script in a Vietnamese or French report, where the
            # machine has a Khmer font (a deployment for Vietnam alone may have none).
            try:
                self.add_font("khmer", fname=str(fonts.khmer()))
                self.set_fallback_fonts(["khmer"])
            except fonts.FontMissing:
                pass
        self.set_text_shaping(True)
        self.set_title(text(language, "report_title"))
        self.set_creator("Spean")

    def t(self, message_id: str, **values: object) -> str:
        return text(self.language, message_id, **values)

    def heading(self, words: str, size: int = _HEADING) -> None:
        self.ln(2)
        self.set_font(self.main, size=size)
        self.multi_cell(0, _LINE + 2, words, new_x="LMARGIN", new_y="NEXT", align="L")
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1.5)

    def para(self, words: str) -> None:
        self.set_font(self.main, size=_BODY)
        self.multi_cell(0, _LINE, words, new_x="LMARGIN", new_y="NEXT", align="L")

    def items(self, lines: list[str]) -> None:
        if not lines:
            self.para(self.t("report_none"))
        for line in lines:
            self.para(f"• {line}")

    def field(self, label: str, value: str) -> None:
        self.para(f"{self.t(label)}: {value}")


def _coded(words: str, code: str | None, pdf: _Report) -> str:
    return f"{words} ({pdf.t('report_code')} {code})" if code else words


def render(report: ReportContent, made_at: datetime) -> bytes:
    """The PDF's bytes; raises fonts.FontMissing when the machine lacks a font for the language."""
    pdf = _Report(report.language)
    clock = ZoneInfo(report.timezone)
    locale = report.language
    pdf.add_page()
    pdf.heading(pdf.t("report_title"), size=18)
    pdf.field("report_patient", report.patient_name)
    pdf.field("report_date", format_date(report.start.astimezone(clock), "long", locale=locale))
    pdf.field("report_facility", report.facility)
    pdf.field("report_specialist", report.specialist)
    if report.reason:
        pdf.field("report_reason", report.reason)
    pdf.heading(pdf.t("report_findings"))
    pdf.items([_coded(f.text, f.code, pdf) for f in report.findings])
    pdf.heading(pdf.t("report_prescriptions"))
    lines = []
    for p in report.prescriptions:
        how = pdf.t(
            "report_prescription_line",
            dose=p.dose, route=pdf.t(f"report_route_{p.route}"), frequency=p.frequency, days=p.days,
        )  # fmt: skip
        lines.append(_coded(p.drug, p.code, pdf) + f": {how}" + (f". {p.instructions}" if p.instructions else ""))
    pdf.items(lines)
    pdf.heading(pdf.t("report_follow_up"))
    pdf.items(report.follow_up)
    if report.advice:
        pdf.heading(pdf.t("report_advice"))
        pdf.items(report.advice)
    pdf.heading(pdf.t("report_referral"))
    decision = pdf.t(f"report_referral_{report.referral_status or 'none'}")
    pdf.para(decision + (f" {report.referral_note}" if report.referral_note else ""))
    pdf.ln(4)
    pdf.set_font(pdf.main, size=9)
    made = format_datetime(made_at.astimezone(clock), "medium", tzinfo=clock, locale=locale)
    pdf.multi_cell(0, 5, pdf.t("report_footer", when=made), new_x="LMARGIN", new_y="NEXT", align="L")
    return bytes(pdf.output())
