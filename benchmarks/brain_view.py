"""What the brain's one view costs: the wallboard document from N nodes' live models.

Each node's model holds ``calls`` citizens (two channels each, one in a bridge), a third of
them waiting in the queue, the example city's operators and agency phones. The brain merges
the models of the nodes up (``dispatcher.cluster.merged``) once per document and computes
the wallboard from the union (``dispatcher.brain.ClusterServer.wallboard``). Printed: the
best and median time per document for each size; one document is computed per push to the
pages, so this bounds how often the board can follow a busy center.

    .venv/bin/python benchmarks/brain_view.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialplans.contract import QUEUE_NAME  # noqa: E402
from dispatcher.cluster.merged import merge_models  # noqa: E402
from dispatcher.config.loader import load_center  # noqa: E402
from dispatcher.config.model import Center  # noqa: E402
from dispatcher.web.wallboard import wallboard_document  # noqa: E402
from pbx.ami.model import LiveModel  # noqa: E402

EXAMPLE = ROOT / "config" / "siaga.example.yaml"


def node_model(center: Center, node: str, calls: int) -> LiveModel:
    """A busy node's live model, built from the events Asterisk would send."""
    model = LiveModel(lambda: 1000.0)
    for i in range(calls):
        citizen, other = f"{node}-1700000000.{2 * i}", f"{node}-1700000000.{2 * i + 1}"
        model.handle({"Event": "Newchannel", "Uniqueid": citizen, "Linkedid": citizen,
                      "Channel": f"PJSIP/anonymous-{i:08x}", "CallerIDNum": f"0812{i:07d}"})
        if i % 3 == 0:
            model.handle({"Event": "QueueCallerJoin", "Queue": QUEUE_NAME,
                          "Uniqueid": citizen, "Channel": f"PJSIP/anonymous-{i:08x}",
                          "Position": str(i // 3 + 1)})
            continue
        model.handle({"Event": "Newchannel", "Uniqueid": other, "Linkedid": citizen,
                      "Channel": f"PJSIP/201-{i:08x}"})
        model.handle({"Event": "BridgeCreate", "BridgeUniqueid": f"{node}-b{i}"})
        for uid in (citizen, other):
            model.handle({"Event": "BridgeEnter", "BridgeUniqueid": f"{node}-b{i}",
                          "Uniqueid": uid})
    for n, op in enumerate(center.operators):
        model.handle({"Event": "QueueMemberStatus", "Queue": QUEUE_NAME,
                      "Interface": f"PJSIP/{op.extension}", "MemberName": op.name,
                      "Status": "2" if n % 2 else "1", "Paused": "0", "InCall": "0"})
    for agency in center.agencies:
        for ext in agency.extensions:
            model.handle({"Event": "DeviceStateChange", "Device": f"PJSIP/{ext}",
                          "State": "NOT_INUSE"})
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    center = load_center(EXAMPLE, state_dir="/tmp/siaga-bench-brain")
    print("nodes  calls/node  channels   best ms  median ms")
    for nodes in (1, 2, 4, 8):
        for calls in (100, 500):
            models = [node_model(center, chr(ord("a") + n), calls) for n in range(nodes)]
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                doc = wallboard_document(merge_models(models, lambda: 1000.0), center, 1000.0)
                times.append((time.perf_counter() - started) * 1000)
            channels = sum(len(m.channels) for m in models)
            assert doc["waiting"] == nodes * len(range(0, calls, 3))
            print(f"{nodes:>5}  {calls:>10}  {channels:>8}  {min(times):>8.2f}  "
                  f"{statistics.median(times):>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
