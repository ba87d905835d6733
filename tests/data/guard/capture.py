"""Record the security events a real Asterisk 22 sends the server, for the guard's fixtures.

Starts Asterisk on the example city (the e2e harness: free ports, private state directory)
and, with pjsua2 phones on 127.0.0.1 and SIPVicious on 127.0.0.2:

* operator 201 registers (a challenge, then a good answer);
* a citizen calls 112 three times and hangs up in the menu (what a caller who dials
  often causes);
* ``svcrack`` guesses ten passwords for 202; ``svwar`` registers as unknown users;

then saves every security-class AMI event (those with a ``RemoteAddress``), unchanged, in
the order received:

    .venv/bin/python tests/data/guard/capture.py

This is a tool run by hand when the fixtures need renewing, not part of the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from pbx.phone.events import CallState  # noqa: E402
from pbx.phone.phone import Phone  # noqa: E402
from pbx.phone.stack import SipStack  # noqa: E402
from pbx.provision import locate  # noqa: E402
from tests.harness import start_asterisk  # noqa: E402


def main() -> int:
    """Run the phones and scanners and write ``asterisk22-security.json`` here."""
    state = Path(tempfile.mkdtemp(prefix="guard-capture-"))
    asterisk = start_asterisk(state, locate())
    stack = SipStack()
    try:
        ami = asterisk.ami()
        host, port = asterisk.sip_address.split(":")
        operator = Phone(stack, "201", server=asterisk.sip_address,
                         password=asterisk.password("201"))
        operator.wait_registered(10)
        citizen = Phone(stack, "08123456789", server=asterisk.sip_address)
        for _ in range(3):
            call = citizen.call("112")
            call.wait_state(CallState.CONFIRMED, 10)
            stack.run_for(1.0)
            call.hangup()
            call.wait_disconnected(10)
        for tool, args in (("svcrack", ["-u", "202", "-r", "1-10"]),
                           ("svwar", ["--force", "-e", "100-105"])):
            subprocess.run([sys.executable, "-m", "tests.sipscan", tool, "-b", "127.0.0.2",
                            "-p", port, "--maximumtime", "2", *args, host],
                           cwd=REPO, capture_output=True, timeout=120, check=False)
        stack.run_for(1.0)
        events = [e for e in ami.events if "RemoteAddress" in e]
        (HERE / "asterisk22-security.json").write_text(json.dumps(events, indent=1) + "\n")
        print(f"{len(events)} security events")
        operator.close()
        citizen.close()
    finally:
        stack.close()
        asterisk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
