"""The center as a system service: `siaga install`'s unit runs the center under the unit's
restrictions, `siaga doctor` finds what is wrong, and the commands find the installed config.

systemd does not run as PID 1 on the machines the suite runs on, so the unit cannot be
started by systemd here. What the unit does is done by hand instead: its ExecStart runs with
its Environment only, in a mount namespace where everything but its ReadWritePaths is
read-only and /home and /root are hidden (ProtectSystem=strict, ProtectHome=yes), /proc/sys is
read-only (ProtectKernelTunables), without the right to gain privileges (NoNewPrivileges),
with root's capabilities cut to the unit's CapabilityBoundingSet, and only the system calls
of its SystemCallFilter (built with libseccomp from systemd's own lists). A crash and restart under
KillMode=process is a SIGKILL to the server followed by the same ExecStart. The notify socket
and watchdog period systemd would pass (Type=notify, WatchdogSec=) are a socket of the test's.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import SiagaProcess, wait_for, write_test_config

pytestmark = pytest.mark.asterisk

SIAGA = Path(sys.executable).parent / "siaga"
SECCOMP = Path(__file__).resolve().parent.parent / "seccomp.py"

# ProtectSystem=strict + ReadWritePaths, ProtectHome=yes and ProtectKernelTunables, as
# mounts in a private namespace; then NoNewPrivileges and CapabilityBoundingSet by setpriv,
# and SystemCallFilter by tests/seccomp.py.
# $1 the ReadWritePaths (space-separated), $2 the bounding set for setpriv, $3 and $4 the
# unit's ProtectHome and PrivateTmp (yes or no), then the command.
SANDBOX = r"""
set -e
rw="$1"; caps="$2"; home="$3"; tmp="$4"; shift 4
for p in $rw; do mount --bind "$p" "$p"; done
awk '{print $5}' /proc/self/mountinfo | while read -r m; do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  keep=""; for p in $rw; do [ "$m" = "$p" ] && keep=1; done
  [ -n "$keep" ] || mount -o remount,bind,ro "$m"
done
if [ "$home" = yes ]; then
  for h in /home /root /run/user; do [ -d "$h" ] && mount -t tmpfs -o ro,mode=0000 none "$h"; done
fi
if [ "$tmp" = yes ]; then mount -t tmpfs -o mode=1777 none /tmp; fi
mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys
# The emulation itself must hold, or the test would prove nothing.
if touch /usr/.siaga-sandbox-probe 2>/dev/null; then echo "sandbox: /usr writable"; exit 97; fi
exec setpriv --no-new-privs --inh-caps=-all --bounding-set "$caps" -- "$@"
"""


def unit_settings(text: str) -> dict[str, list[str]]:
    """The assignments of a unit file, by key (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def unit_words(value: str) -> list[str]:
    """A command line or list of the unit, as systemd splits and unescapes it."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]


class Service:
    """The installed unit's ExecStart, run as the unit would run it."""

    def __init__(self, unit: Path, out: Path) -> None:
        settings = unit_settings(unit.read_text())
        self.settings = settings
        self.argv = unit_words(settings["ExecStart"][0])
        env = dict(w.split("=", 1) for v in settings.get("Environment", [])
                   for w in unit_words(v))
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        # This checkout's code, not whichever the virtualenv was installed from.
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.env = env
        self.rw = " ".join(unit_words(settings["ReadWritePaths"][0]))
        caps = unit_words(settings["CapabilityBoundingSet"][0])
        self.caps = "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps)
        assert settings["SystemCallErrorNumber"] == ["EPERM"]  # what tests/seccomp.py does
        self.syscalls = ",".join(unit_words(settings["SystemCallFilter"][0]))
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: socket.socket | None = None
        self.notes: list[bytes] = []

    def notes_received(self) -> list[bytes]:
        """Every message the service sent to its notify socket so far."""
        assert self.notify is not None
        self.notify.setblocking(False)
        try:
            while True:
                self.notes.append(self.notify.recv(4096))
        except BlockingIOError:
            pass
        return self.notes

    def flag(self, key: str) -> str:
        """A yes/no setting of the unit (no when absent)."""
        return (self.settings.get(key) or ["no"])[0]

    def start(self) -> None:
        """Run ExecStart in the sandbox; wait for the center's banner."""
        with self.out.open("ab") as out:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", SANDBOX, "sandbox",
                 self.rw, self.caps, self.flag("ProtectHome"), self.flag("PrivateTmp"),
                 sys.executable, str(SECCOMP), self.syscalls, "--", *self.argv],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the service exited {self.proc.returncode}:\n"
                                   f"{self.out.read_text(errors='replace')[-4000:]}")
            return "Stop with Ctrl-C." in self.out.read_text(errors="replace")
        wait_for(up, 90, "the service to start")

    def signal(self, sig: int) -> None:
        """What systemd sends the main process."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        """Its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout)


def doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`siaga doctor` as an administrator runs it: no --config."""
    proc = subprocess.run([str(SIAGA), "doctor", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def asterisk_pid(state_dir: Path) -> int | None:
    """The Asterisk on this state directory."""
    from pbx.asterisk import stale_pid

    return stale_pid(state_dir / "run" / "run")


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[Service, dict[str, str], Path]]:
    """A center installed into a temporary /etc, its state directory in the test's."""
    config = write_test_config(tmp_path / "center.yaml")
    doc = yaml.safe_load(config.read_text())
    doc["state_dir"] = str(tmp_path / "state")
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    env = dict(os.environ, SIAGA_SYSCONFDIR=str(tmp_path / "etc"))
    env.pop("SIAGA_CONFIG", None)
    subprocess.run([str(SIAGA), "install", "--config", str(config)], env=env, check=True,
                   capture_output=True, timeout=120)
    service = Service(tmp_path / "etc" / "systemd" / "system" / "siaga.service",
                      tmp_path / "service.out")
    # What systemd gives a Type=notify service with a watchdog (2 s here: pings every 1 s).
    service.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    service.notify.bind(str(tmp_path / "notify.sock"))
    service.env.update(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000")
    try:
        yield service, env, tmp_path / "state"
    finally:
        service.notify.close()
        if service.proc is not None and service.proc.poll() is None:
            service.signal(signal.SIGTERM)
            try:
                service.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(service.proc.pid, signal.SIGKILL)
        pid = asterisk_pid(tmp_path / "state")
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: asterisk_pid(tmp_path / "state") is None, 20, "Asterisk to stop")


def test_given_installed_unit_when_exec_start_runs_confined_then_doctor_finds_all_well(
        installed: tuple[Service, dict[str, str], Path]) -> None:
    """The unit's ExecStart, confined as the unit says, runs the whole center (Asterisk in
    its chroot included); every log line is JSON; `siaga doctor` without --config finds the
    installed config and reports every part well; SIGTERM stops Asterisk with the server."""
    service, env, state = installed
    service.start()
    ready = wait_for(lambda: [n for n in service.notes_received() if n.startswith(b"READY=1")],
                     30, "READY=1 on the notify socket")
    assert b"STATUS=Bitung Command Center: up" in ready[0]
    pings = len([n for n in service.notes_received() if n == b"WATCHDOG=1"])
    wait_for(lambda: len([n for n in service.notes_received() if n == b"WATCHDOG=1"])
             >= pings + 2, 30, "the reactor's watchdog pings")
    code, report = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(doctor(env)), 60,
                            "siaga doctor to report all well")
    for part in ("config", "asterisk", "ami", "database", "disk", "ports"):
        assert any(line.startswith(f"ok   {part}") for line in report.splitlines()), report
    assert "supervised by siaga up" in report, report
    lines = service.out.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "namespace", "message"} <= r.keys() for r in records)
    assert any("starting Asterisk" in r["message"] for r in records)
    pid = asterisk_pid(state)
    assert pid is not None
    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0
    assert b"STOPPING=1" in service.notes_received()
    wait_for(lambda: asterisk_pid(state) is None, 20, "Asterisk to stop with the service")
    code, report = doctor(env)
    assert code == 1
    assert "FAIL asterisk" in report and "is not running" in report


def test_given_service_when_server_crashes_then_asterisk_lives_and_the_restart_adopts_it(
        installed: tuple[Service, dict[str, str], Path]) -> None:
    """KillMode=process: a server killed outright leaves Asterisk (and its calls) running;
    doctor says the server is missing and how to fix it; the restarted ExecStart adopts
    the same Asterisk and doctor is content again."""
    service, env, state = installed
    service.start()
    pid = asterisk_pid(state)
    assert pid is not None
    service.signal(signal.SIGKILL)
    service.wait(30)
    assert asterisk_pid(state) == pid, "Asterisk must outlive the crashed server"
    code, report = doctor(env)
    assert code == 1, report
    assert "with no siaga server" in report and "adopts this Asterisk" in report
    service.out.write_text("")
    service.start()
    assert "adopting the running Asterisk" in service.out.read_text()
    assert asterisk_pid(state) == pid
    code, report = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(doctor(env)), 60,
                            "siaga doctor to report all well")
    assert f"running (pid {pid}), adopted by siaga up" in report


def test_given_config_pointing_at_the_wrong_ami_port_when_doctor_runs_then_it_says_so(
        installed: tuple[Service, dict[str, str], Path], tmp_path: Path) -> None:
    """An AMI port changed in the config but not in the running center: doctor fails the
    AMI login and the port, names the port, and says to restart."""
    from tests.harness import free_port

    service, env, _ = installed
    service.start()
    wait_for(lambda: doctor(env)[0] == 0, 60, "siaga doctor to report all well")
    installed_config = tmp_path / "etc" / "siaga" / "siaga.yaml"
    doc = yaml.safe_load(installed_config.read_text())
    wrong = free_port()
    doc["ami"]["port"] = wrong
    installed_config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    code, report = doctor(env)
    assert code == 1, report
    ami = next(line for line in report.splitlines() if line.startswith("FAIL ami"))
    assert f"nothing listens on 127.0.0.1:{wrong}" in ami and "restart" in ami
    assert f"FAIL ports     AMI tcp/{wrong}: nothing bound" in report
    assert "ok   asterisk" in report  # the rest of the center is still reported well


@pytest.fixture
def json_center(tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[SiagaProcess]:
    """`siaga up` with JSON log lines ($SIAGA_LOG_FORMAT, as a unit's Environment= sets it)."""
    monkeypatch.setenv("SIAGA_LOG_FORMAT", "json")
    tmp = tmp_path_factory.mktemp("json-center")
    proc = SiagaProcess(write_test_config(tmp / "center.yaml"), tmp / "state")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_given_json_logs_when_a_citizen_gives_up_in_the_queue_then_its_line_has_the_call_id(
        json_center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """A citizen waits in the queue and hangs up: the server's line about that missed call
    is one JSON object whose call_id is the call's linkedid in Asterisk."""
    from pbx.phone.phone import Phone

    center = json_center.center
    number = "081377001"
    citizen = phones._keep(Phone(phones.stack, number,
                                 server=f"{center.sip.host}:{center.sip.port}"))
    watch = json_center.ami()
    try:
        call = citizen.call(center.hotline[0])
        call.wait_confirmed(10)
        call.send_dtmf("0")  # straight to the operators' queue
        joined = watch.wait_event("QueueCallerJoin", 20, CallerIDNum=number)
    finally:
        watch.close()
    call.hangup()
    call.wait_disconnected(10)

    def missed() -> dict | None:
        for line in json_center.output().splitlines():
            record = json.loads(line)
            if "Missed hotline call" in record["message"] and number in record["message"]:
                return record
        return None

    record = wait_for(missed, 30, "the log line about the missed call")
    assert record["call_id"] == joined["Linkedid"]
    assert record["namespace"].startswith("dispatcher.hotline")
