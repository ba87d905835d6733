"""The hotline's server side: queue membership, transfers, priorities and callbacks over AMI.

The dialplan (dialplans/templates/extensions.conf.j2) carries every call without the server;
this package is what the server and the operator console add:

* :class:`~dispatcher.hotline.service.HotlineService`: login/logout/pause/unpause, extra
  members, caller priority, ``transfer(operator_channel, agency, mode)``, ``call_back``;
* :mod:`~dispatcher.hotline.callbacks`: abandoned/dropped call detection (sans-IO) and the
  callback list;
* :mod:`~dispatcher.hotline.codes`: the operators' feature codes.
"""

from dispatcher.hotline.callbacks import (
    CallbackEntry,
    CallbackList,
    MissedCall,
    MissedCallDetector,
    SqlCallbackStore,
)
from dispatcher.hotline.service import (
    HotlineError,
    HotlineService,
    InvalidInput,
    MissedCallWatcher,
    NoWayBack,
    TransferMode,
    callback_target,
)

__all__ = [
    "CallbackEntry",
    "CallbackList",
    "HotlineError",
    "HotlineService",
    "InvalidInput",
    "MissedCall",
    "MissedCallDetector",
    "MissedCallWatcher",
    "NoWayBack",
    "SqlCallbackStore",
    "TransferMode",
    "callback_target",
]
