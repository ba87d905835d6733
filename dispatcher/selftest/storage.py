"""Self-test results in the call log (one row per test call; blocking: the writer's thread)."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.calllog.models import SelfTestRun
from dispatcher.selftest.runner import ProbeReport

__all__ = ["latest_runs", "save_run"]


def _ts(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def save_run(session: Session, report: ProbeReport) -> int:
    """Keep ``report``; returns the row's id."""
    row = SelfTestRun(started_at=_ts(report.started_at), finished_at=_ts(report.finished_at),
                      ok=report.ok, stage=report.stage[:16],
                      error=report.error[:500] if report.error else None,
                      detail=json.dumps(report.detail, sort_keys=True))
    session.add(row)
    session.flush()
    return row.id


def latest_runs(session: Session, limit: int = 20) -> list[SelfTestRun]:
    """The newest self-test results first."""
    return list(session.scalars(
        select(SelfTestRun).order_by(SelfTestRun.started_at.desc()).limit(limit)))
