"""Supervisor reports rendered as HTML, CSV or JSON, in Bahasa Indonesia (default) or English.

:func:`render` turns the data of :func:`dispatcher.calllog.report_figures.build_report` into a
document.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from importlib import resources
from typing import Any

import jinja2

TEXT: dict[str, dict[str, str]] = {
    "id": {
        "title": "Laporan Kinerja Layanan Panggilan Darurat",
        "period": "Periode",
        "timezone": "Zona waktu",
        "generated": "Dibuat",
        "summary": "Ringkasan",
        "offered": "Panggilan masuk",
        "answered": "Dijawab operator",
        "abandoned": "Ditinggalkan penelepon",
        "abandoned_ivr": "… di menu IVR",
        "abandoned_queue": "… di antrean",
        "unanswered": "Tidak terjawab (antrean habis waktu)",
        "dropped": "Terputus karena gangguan",
        "short_abandons_excluded": "Panggilan singkat dikecualikan (< {n} dtk)",
        "requeued": "Masuk antrean lebih dari sekali",
        "asa": "Rata-rata waktu jawab (ASA)",
        "aht": "Rata-rata durasi penanganan (AHT)",
        "max_answer": "Waktu jawab terlama",
        "service_level": "Tingkat layanan (NENA-STA-020.1)",
        "within": "Dijawab ≤ {s} dtk",
        "target": "Target",
        "met": "Tercapai",
        "not_met": "Tidak tercapai",
        "outbound": "Panggilan keluar (panggilan balik)",
        "operators": "Per operator",
        "operator": "Operator",
        "talk_time": "Total waktu bicara",
        "agencies": "Per instansi",
        "agency": "Instansi",
        "transfers": "Transfer",
        "agency_answer": "Rata-rata waktu jawab instansi",
        "agency_answered": "Dijawab instansi",
        "no_answers": "Tidak dijawab/sibuk/gagal",
        "fallbacks": "Dialihkan ke cadangan",
        "categories": "Per kategori IVR",
        "category": "Kategori",
        "no_category": "(tanpa kategori)",
        "hourly": "Distribusi per jam",
        "hour": "Jam",
        "callbacks": "Panggilan balik",
        "created": "Dibuat",
        "pending": "Menunggu",
        "ringing": "Berdering",
        "done": "Selesai",
        "failed": "Gagal",
        "open_now": "Belum selesai saat ini",
        "repeat_callers": "Penelepon berulang",
        "numbers": "Nomor",
        "calls": "Panggilan",
        "number": "Nomor",
        "seconds": "dtk",
        "none": "—",
        "notes": (
            "Panggilan dihitung pada jam kedatangannya. Waktu jawab diukur dari panggilan tiba di "
            "pusat hingga tersambung ke operator (termasuk menu IVR). Tingkat layanan = panggilan "
            "yang dijawab dalam batas waktu dibagi panggilan masuk."
        ),
        "cat.police": "Polisi",
        "cat.fire": "Pemadam kebakaran",
        "cat.health": "Kesehatan/ambulans",
        "cat.disaster": "Bencana",
        "cat.public_order": "Ketertiban umum",
        "cat.transport": "Perhubungan",
        "cat.unknown": "Tidak memilih",
        "cat.operator": "Langsung ke operator",
        "cat.panic": "Tombol panik",
        "cat.callback": "Panggilan balik",
    },
    "en": {
        "title": "Emergency Call Center Performance Report",
        "period": "Period",
        "timezone": "Time zone",
        "generated": "Generated",
        "summary": "Summary",
        "offered": "Calls offered",
        "answered": "Answered by an operator",
        "abandoned": "Abandoned by the caller",
        "abandoned_ivr": "… in the IVR menu",
        "abandoned_queue": "… in the queue",
        "unanswered": "Unanswered (queue timed out)",
        "dropped": "Dropped by a fault",
        "short_abandons_excluded": "Short abandons excluded (< {n} s)",
        "requeued": "Queued more than once",
        "asa": "Average speed of answer (ASA)",
        "aht": "Average handle time (AHT)",
        "max_answer": "Longest answer time",
        "service_level": "Service level (NENA-STA-020.1)",
        "within": "Answered ≤ {s} s",
        "target": "Target",
        "met": "Met",
        "not_met": "Not met",
        "outbound": "Outbound calls (callbacks)",
        "operators": "Per operator",
        "operator": "Operator",
        "talk_time": "Total talk time",
        "agencies": "Per agency",
        "agency": "Agency",
        "transfers": "Transfers",
        "agency_answer": "Mean agency answer time",
        "agency_answered": "Answered by the agency",
        "no_answers": "No answer/busy/failed",
        "fallbacks": "Fell back",
        "categories": "Per IVR category",
        "category": "Category",
        "no_category": "(no category)",
        "hourly": "Hourly distribution",
        "hour": "Hour",
        "callbacks": "Callbacks",
        "created": "Created",
        "pending": "Pending",
        "ringing": "Ringing",
        "done": "Done",
        "failed": "Failed",
        "open_now": "Still open now",
        "repeat_callers": "Repeat callers",
        "numbers": "Numbers",
        "calls": "Calls",
        "number": "Number",
        "seconds": "s",
        "none": "—",
        "notes": (
            "Calls count in the hour they arrived. Answer time runs from arrival at the center "
            "to connection with an operator (IVR menu included). Service level = calls answered "
            "within the limit divided by calls offered."
        ),
        "cat.police": "Police",
        "cat.fire": "Fire",
        "cat.health": "Health/ambulance",
        "cat.disaster": "Disaster",
        "cat.public_order": "Public order",
        "cat.transport": "Transport",
        "cat.unknown": "No choice",
        "cat.operator": "Straight to an operator",
        "cat.panic": "Panic button",
        "cat.callback": "Callback",
    },
}


def _environment() -> jinja2.Environment:
    templates = resources.files("dispatcher.calllog") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def hourly_chart(
    hourly: list[dict[str, Any]], width: int = 720, height: int = 220
) -> dict[str, Any]:
    """Geometry of the hourly SVG bar chart (offered vs answered per hour)."""
    # Whole-call gridlines: a step of 1, 2, 5, 10, 20, 50... giving at most 5 lines.
    highest = max([h["offered"] for h in hourly] + [1])
    step = 1
    while highest / step > 5:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if highest / step <= 5:
                break
    top = step * math.ceil(highest / step)
    left, bottom, right, upper = 40, 24, 8, 10
    plot_w, plot_h = width - left - right, height - bottom - upper
    slot = plot_w / 24
    bars = []
    for h in hourly:
        offered_h = plot_h * h["offered"] / top
        answered_h = plot_h * h["answered"] / top
        x = left + slot * h["hour"]
        bars.append(
            {
                "hour": h["hour"],
                "x": round(x + slot * 0.1, 1),
                "w": round(slot * 0.8, 1),
                "offered_y": round(upper + plot_h - offered_h, 1),
                "offered_h": round(offered_h, 1),
                "answered_y": round(upper + plot_h - answered_h, 1),
                "answered_h": round(answered_h, 1),
                "offered": h["offered"],
                "answered": h["answered"],
                "label_x": round(x + slot / 2, 1),
            }
        )
    ticks = [
        {"value": value, "y": round(upper + plot_h - plot_h * value / top, 1)}
        for value in range(0, top + 1, step)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "base_y": upper + plot_h,
        "right": width - right,
        "bars": bars,
        "ticks": ticks,
    }


def render_html(report: dict[str, Any]) -> str:
    """The report as a self-contained HTML page (inline CSS and SVG, no scripts)."""
    language = report.get("language", "id")
    text = TEXT.get(language, TEXT["id"])
    template = _environment().get_template("report.html.j2")
    return template.render(r=report, t=text, lang=language, chart=hourly_chart(report["hourly"]))


def render_json(report: dict[str, Any]) -> str:
    """The report as JSON (UTF-8 text, stable key order)."""
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


# A cell a spreadsheet would read as a formula (or as the start of one: a tab or CR is
# skipped by some, leaving the formula behind).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Plain numbers stay readable and sortable as numbers: +62 caller numbers, -1, 12.5.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")


def csv_safe(value: object) -> str:
    """A CSV cell that no spreadsheet runs as a formula.

    A value starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading single quote
    (shown as text, not evaluated) unless it is a plain number such as ``+6281234567`` or
    ``-3``, which a spreadsheet reads as a number and never as a formula. Line breaks inside
    a value become spaces.
    """
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    # The writer quotes cells holding its own line ending ("\n") only: a lone CR would
    # end the row in a spreadsheet and start a forged one.
    return _LINE_BREAKS.sub(" ", text)


class _SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`csv_safe`."""

    def __init__(self, out: io.StringIO) -> None:
        self._writer = csv.writer(out, lineterminator="\n")

    def writerow(self, row: list[Any]) -> None:
        self._writer.writerow([csv_safe(cell) for cell in row])


def render_csv(report: dict[str, Any]) -> str:
    """The report as CSV in long form: ``section,item,metric,value`` (one figure per line).

    Caller numbers come from callers: every cell is made safe to open in a spreadsheet
    (:func:`csv_safe`).
    """
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow(["section", "item", "metric", "value"])
    writer.writerow(["period", "", "from", report["period"]["from"]])
    writer.writerow(["period", "", "to", report["period"]["to"]])
    writer.writerow(["period", "", "timezone", report["period"]["timezone"]])
    for key, value in report["summary"].items():
        if key == "service_levels":
            for sl in value:
                item = f"{sl['seconds']}s"
                for metric in ("answered_within", "percent", "target_percent", "met"):
                    writer.writerow(["service_level", item, metric, _cell(sl[metric])])
        else:
            writer.writerow(["summary", "", key, _cell(value)])
    for section, key in (("operators", "code"), ("agencies", "code"), ("categories", "category")):
        for row in report[section]:
            for metric, value in row.items():
                if metric != key:
                    writer.writerow([section, row[key], metric, _cell(value)])
    for row in report["hourly"]:
        for metric, value in row.items():
            if metric != "hour":
                writer.writerow(["hourly", f"{row['hour']:02d}", metric, _cell(value)])
    for metric, value in report["callbacks"].items():
        writer.writerow(["callbacks", "", metric, _cell(value)])
    writer.writerow(["repeat_callers", "", "numbers", report["repeat_callers"]["numbers"]])
    writer.writerow(["repeat_callers", "", "calls", report["repeat_callers"]["calls"]])
    for row in report["repeat_callers"]["top"]:
        writer.writerow(["repeat_callers", row["number"], "calls", row["calls"]])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


RENDERERS = {"html": render_html, "csv": render_csv, "json": render_json}


def render(report: dict[str, Any], fmt: str) -> str:
    """Render the report in ``fmt`` (html, csv or json)."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r} (html, csv, json)") from None
    return renderer(report)
