"""Record what a real Asterisk 22 tells the call log about hotline calls, for the fixtures.

Starts Asterisk on the example city (the e2e harness: free ports, private state directory),
places two hotline calls through Local channels (no SIP phone needed):

* A presses 1 (police) in the Indonesian menu and waits in the queue (no operator is
  registered) until B's call is over, then is hung up;
* B hangs up in the menu after 4 s;

then copies the CEL file Asterisk wrote (cel_custom, the generated mapping) and saves every AMI
event the harness received, unchanged:

    .venv/bin/python tests/data/calllog/capture.py

This is a tool run by hand when the fixtures need renewing, not part of the test suite.
"""

from __future__ import annotations

import glob
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pbx.provision import locate  # noqa: E402
from tests.harness import start_asterisk, wait_for  # noqa: E402


def main() -> int:
    """Run the calls and write the two fixture files next to this script."""
    state = Path(tempfile.mkdtemp(prefix="calllog-capture-"))
    asterisk = start_asterisk(state, locate())
    try:
        ami = asterisk.ami()
        ami.action(
            "Originate",
            Channel="Local/112@public",
            Application="Wait",
            Data="40",
            CallerID="Warga A <08123456789>",
            Async="true",
        )
        first = wait_for(
            lambda: [
                e["Channel"] for e in ami.matching("Newchannel") if e["Channel"].endswith(";1")
            ],
            10,
            "call A's channel",
        )
        # The menu accepts a key while it speaks: press 1 once A hears it.
        ami.wait_event("Newexten", 10, Context="ivr-id", Application="BackGround",
                       CallerIDNum="08123456789")
        ami.action("PlayDTMF", Channel=first[0], Digit="1", Duration="200")  # type: ignore[index]
        ami.wait_event("QueueCallerJoin", 30, CallerIDNum="08123456789")
        ami.action(
            "Originate",
            Channel="Local/112@public",
            Application="Wait",
            Data="4",
            CallerID="Warga B <08120000002>",
            Async="true",
        )
        # B's Local pair ends when its Wait(4) does, still in the menu.
        wait_for(lambda: len(ami.matching("Hangup", CallerIDNum="08120000002")) >= 2, 30,
                 "call B to end in the menu")
        try:
            ami.command("channel request hangup all")
        except RuntimeError as exc:  # the CLI's output may come without a response status
            print(f"hangup all: {exc}")
        wait_for(lambda: len(ami.matching("Hangup")) >= 4, 30, "every channel hung up")
        pattern = str(asterisk.prepared.paths.log) + "/**/Master.csv"

        def both_ended() -> bool:
            # Asterisk writes LINKEDID_END after the last hangup of each call.
            files = glob.glob(pattern, recursive=True)
            return bool(files) and Path(files[0]).read_text().count('"LINKEDID_END"') >= 2

        wait_for(both_ended, 30, "CEL to close both calls")
        (cel_file,) = glob.glob(pattern, recursive=True)
        shutil.copy(cel_file, HERE / "asterisk22-hotline.cel.csv")
        with ami.lock:
            events = list(ami.events)
        (HERE / "asterisk22-hotline.ami.json").write_text(
            json.dumps(events, indent=0, sort_keys=True)
        )
        print(f"{len(events)} AMI events, CEL file copied from {cel_file}")
    finally:
        asterisk.stop()
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
