"""The standalone API server (``python -m dispatcher.api.standalone``) as a child process.

Tests that must SIGKILL the alert path and start it again run it this way: the same HTTP,
call log writer and alert batcher code ``siaga up`` runs, in a process of its own.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.harness import wait_for

REPO = Path(__file__).resolve().parents[2]


class StandaloneApi:
    """One standalone API server: started on a free port, killed or stopped at will.

    ``args`` are the command line after ``--config``/``--state-dir``/``--db``/``--port``;
    each start writes its output to ``server.N.log`` in ``workdir``.
    """

    def __init__(self, workdir: Path, config: Path, state_dir: Path, db: str,
                 args: list[str]) -> None:
        self.workdir = workdir
        self.config = config
        self.state_dir = state_dir
        self.db = db
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.runs = 0
        self.log_path = workdir / "server.0.log"

    def start(self) -> None:
        """Start it and wait until it listens."""
        self.runs += 1
        out_path = self.workdir / f"server.{self.runs}.log"
        with out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dispatcher.api.standalone", "--config",
                 str(self.config), "--state-dir", str(self.state_dir), "--db", self.db,
                 "--port", "0", *self.args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)

        def listening() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API server exited:\n{out_path.read_text()}")
            match = re.search(r"LISTENING (\d+)", out_path.read_text(errors="replace"))
            return int(match.group(1)) if match else None

        self.port = int(wait_for(listening, 60, "the API server to listen"))  # type: ignore[arg-type]
        self.log_path = out_path

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing flushed that was not already committed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop it if it runs (teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def enrol(db_path: Path, count: int, prefix: str) -> dict[str, str]:
    """``count`` devices (``<prefix>-000``...) straight into a fresh SQLite call log;
    device id → token."""
    from dispatcher.calllog import db, store_incidents

    engine = db.make_engine(f"sqlite:///{db_path}")
    db.upgrade(engine)
    tokens = {}
    now = dt.datetime.now(dt.UTC)
    with db.transaction(db.make_sessionmaker(engine)) as session:
        for i in range(count):
            device_id = f"{prefix}-{i:03d}"
            tokens[device_id] = store_incidents.new_token()
            store_incidents.add_device(session, device_id, token=tokens[device_id],
                                       callback_number=f"0812{i:06d}", now=now)
    engine.dispose()
    return tokens
