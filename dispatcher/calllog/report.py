"""Supervisor reports: figures aggregated in SQL, rendered as HTML, CSV or JSON.

The report lives by concern in :mod:`~dispatcher.calllog.report_period` (the period and
local-day arithmetic), :mod:`~dispatcher.calllog.report_figures` (the figures, with their
definitions) and :mod:`~dispatcher.calllog.report_render` (HTML, CSV, JSON). This module
re-exports every public name so that ``from dispatcher.calllog import report`` keeps working.
"""

from __future__ import annotations

from dispatcher.calllog.report_figures import (
    ABANDONED,
    FAILED_TRANSFER,
    SERVICE_LEVELS,
    build_report,
    summary,
)
from dispatcher.calllog.report_period import (
    ReportOptions,
    local_hour,
)
from dispatcher.calllog.report_render import (
    RENDERERS,
    TEXT,
    csv_safe,
    hourly_chart,
    render,
    render_csv,
    render_html,
    render_json,
)

__all__ = [
    "ABANDONED",
    "FAILED_TRANSFER",
    "RENDERERS",
    "ReportOptions",
    "SERVICE_LEVELS",
    "TEXT",
    "build_report",
    "csv_safe",
    "hourly_chart",
    "local_hour",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "summary",
]
