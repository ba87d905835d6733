"""Report documents: HTML (Bahasa Indonesia or English, inline SVG), CSV, JSON, and the CLI."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dispatcher.calllog import (
    cli,
    db,
    journey,
    report_figures,
    report_period,
    report_render,
    store_journeys,
)
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.test_report_figures import DAY, NOW, day_of_calls


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """The report of the hand-counted day, with a hostile caller number added."""
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    records = day_of_calls()
    evil = "<script>alert(1)</script>"
    for i in range(2):
        evil_records = journey.run(
            sc.abandoned_in_ivr(f"evil{i}", sc.T0 + 600 + i, after=30, number="0811").ami(),
            sc.DIRECTORY,
        )
        # The journey builder keeps only clean numbers (dispatcher.callerid); the page must
        # still escape whatever a row holds (one written by an older version, say).
        for record in evil_records:
            record.caller_number = evil
        records += evil_records
    with db.transaction(sessions) as session:
        for record in records:
            store_journeys.save_journey(session, record)
    with sessions() as session:
        result = report_figures.build_report(session, DAY, now=NOW)
    engine.dispose()
    return result


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(html: str) -> _Text:
    """Tags and text of a page."""
    parser = _Text()
    parser.feed(html)
    return parser


def test_given_a_report_when_rendered_in_html_then_it_is_in_bahasa_indonesia_by_default(
    data: dict[str, Any],
):
    """Default language: Indonesian headings and the document's lang attribute."""
    html = report_render.render_html(data)
    assert '<html lang="id">' in html
    text = " ".join(parse_html(html).text)
    assert "Laporan Kinerja" in text and "Tingkat layanan" in text and "Polisi" in text
    assert "Service level" not in text


def test_given_english_when_rendered_then_the_labels_are_english(data: dict[str, Any]):
    """The English option changes every label, not the figures."""
    html = report_render.render_html(dict(data, language="en"))
    text = " ".join(parse_html(html).text)
    assert "Service level" in text and "Per agency" in text and "Police" in text
    assert "Tingkat layanan" not in text


def test_given_a_report_when_rendered_then_the_svg_chart_has_a_bar_per_hour(
    data: dict[str, Any],
):
    """The hourly chart is inline SVG, well-formed, 24 hours x (offered, answered) bars whose
    heights follow the counts."""
    html = report_render.render_html(data)
    start = html.index("<svg")
    svg = html[start : html.index("</svg>", start) + len("</svg>")]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    rects = root.findall(f"{ns}rect")
    assert len(rects) == 48
    heights = [float(r.get("height", "0")) for r in rects[0::2]]  # offered bars
    offered = [h["offered"] for h in data["hourly"]]
    top = max(offered)
    assert heights[offered.index(top)] == max(heights)
    assert [h == 0 for h in heights] == [o == 0 for o in offered]


def test_given_a_hostile_caller_number_when_rendered_then_it_is_escaped(data: dict[str, Any]):
    """Caller numbers come from the network: shown as text, never as markup."""
    html = report_render.render_html(data)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script" not in parse_html(html).tags


def test_given_a_report_when_rendered_as_csv_then_every_figure_is_a_row(data: dict[str, Any]):
    """Long-form CSV: the summary, service levels and per-agency figures are all readable."""
    rows = list(csv.DictReader(io.StringIO(report_render.render_csv(data))))
    index = {(r["section"], r["item"], r["metric"]): r["value"] for r in rows}
    assert index[("summary", "", "offered")] == str(data["summary"]["offered"])
    assert index[("service_level", "15s", "percent")] == str(
        data["summary"]["service_levels"][0]["percent"]
    )
    assert index[("agencies", "police", "fallbacks")] == "1"
    assert index[("hourly", "23", "offered")] == "1"
    assert index[("repeat_callers", "", "numbers")] == str(data["repeat_callers"]["numbers"])


def test_given_a_report_when_rendered_as_json_then_it_reads_back_equal(data: dict[str, Any]):
    """JSON is the data structure itself (what an HTTP resource would serve)."""
    assert json.loads(report_render.render_json(data)) == json.loads(json.dumps(data))


def test_given_an_unknown_format_when_rendering_then_it_is_refused(data: dict[str, Any]):
    """A typo in the format gives an error naming the formats."""
    with pytest.raises(ValueError, match="html, csv, json"):
        report_render.render(data, "pdf")


def test_given_the_cli_when_upgrading_and_reporting_then_a_file_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """``siaga db upgrade`` then ``siaga report --format json -o``: the figures of the calls in
    the database for the requested period."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert cli.main(["db", "upgrade", "--db", url]) == 0
    assert "revision" in capsys.readouterr().out
    engine = db.make_engine(url)
    with db.transaction(db.make_sessionmaker(engine)) as session:
        for record in day_of_calls():
            store_journeys.save_journey(session, record)
    engine.dispose()
    out = tmp_path / "r.json"
    assert (
        cli.main(
            [
                "report",
                "--db",
                url,
                "--from",
                "2026-11-27",
                "--to",
                "2026-11-27",
                "--format",
                "json",
                "--lang",
                "en",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    written = json.loads(out.read_text())
    assert written["summary"]["offered"] == 8
    assert written["language"] == "en"
    assert (
        cli.main(
            ["report", "--db", url, "--from", "2026-11-27", "--to", "2026-11-27", "--format", "csv"]
        )
        == 0
    )
    assert "summary,,offered,8" in capsys.readouterr().out


def test_given_a_database_without_schema_when_reporting_then_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Reporting before ``siaga db upgrade`` says what to run instead of a traceback."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert cli.main(["report", "--db", url]) == 1
    assert "siaga db upgrade" in capsys.readouterr().err


def test_given_dates_in_the_wrong_order_when_reporting_then_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """--to before --from is an error, not an empty report."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli.main(["report", "--db", url, "--from", "2026-11-27", "--to", "2026-11-01"]) == 2


def test_given_the_register_hook_when_added_to_a_parser_then_db_and_report_exist():
    """The ``siaga`` command adds the subcommands through ``register``."""
    parser = argparse.ArgumentParser(prog="siaga")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--from", "2026-11-01", "--format", "csv"])
    assert args.func is cli.cmd_report
    assert args.start == dt.date(2026, 11, 1) and args.format == "csv"
    assert parser.parse_args(["db", "upgrade"]).func is cli.cmd_db_upgrade


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("2026-11-31", "2026-12-01"), "YYYY-MM-DD"),
        (("2026-11-27", "2026-11-01"), "ends before"),
        (("2024-01-01", "2026-01-01"), "longer than"),
        (("2026-11-01", "2026-11-02", "fr"), "language"),
        (("2026-11-01", "2026-11-02", "id", "Mars/Olympus"), "time zone"),
        (("2026-11-01", "2026-11-02", "id", "Asia/Jakarta", "-1"), "between"),
        (("2026-11-01", "2026-11-02", "id", "Asia/Jakarta", "abc"), "number"),
    ],
)
def test_given_bad_report_parameters_when_parsed_then_refused_with_a_reason(
    args: tuple[str, ...], reason: str
):
    """What an HTTP query may carry is checked before any SQL runs."""
    with pytest.raises(ValueError, match=reason):
        report_period.ReportOptions.parse(*args)


def test_given_good_report_parameters_when_parsed_then_options_follow_them():
    """Dates, language, zone and threshold come through."""
    options = report_period.ReportOptions.parse(
        "2026-11-01", "2026-11-30", "en", "Asia/Makassar", "8"
    )
    assert (options.start, options.end) == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert (options.language, options.timezone, options.short_abandon_seconds) == (
        "en",
        "Asia/Makassar",
        8.0,
    )
    assert options.utc_offset_minutes() == 8 * 60


def test_given_both_languages_when_compared_then_every_label_exists_in_each():
    """A label missing in one language would show a key, or fail, in that language only."""
    assert set(report_render.TEXT["id"]) == set(report_render.TEXT["en"])
