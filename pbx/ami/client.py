"""The AMI client on Twisted: one connection's protocol and client, and a reconnecting service.

Layers, from the wire up, each in its own module (every name stays importable from here):

* :mod:`pbx.ami.protocol`: the sans-IO parser and serializer (bytes in, messages out).
* :mod:`pbx.ami.connection`: :class:`AMIProtocol` is a thin Twisted ``Protocol`` feeding the
  parser; :class:`AMIClient` is one logged-in connection: one Deferred per ActionID with a
  timeout, EventList actions collected up to their ``...Complete`` event, MD5 challenge
  login, keepalive pings. When the connection drops, every pending action fails with
  :class:`AMIConnectionLost`; nothing is ever resent on its own, so a reconnect cannot repeat
  an Originate.
* :mod:`pbx.ami.actions`: :class:`AMIActions`, one thin method per AMI action the server
  uses, over any ``send_action``.
* :mod:`pbx.ami.events`: :class:`EventDispatcher` routes events to subscribers by name.
* :mod:`pbx.ami.service`: :class:`AMIService` owns a ``ClientService`` (reconnection with a
  capped backoff), tells listeners each time a connection is logged in (so the live model can
  resync) and keeps subscriptions across reconnections.
* :mod:`pbx.ami.errors`: what all of them raise.

Time comes from the ``IReactorTime`` passed in; nothing here imports the global reactor.
"""

from __future__ import annotations

from pbx.ami.actions import AMIActions, ListResult
from pbx.ami.connection import AMIClient, AMIClientFactory, AMIProtocol, Credentials
from pbx.ami.errors import (
    AMIActionError,
    AMIAuthenticationError,
    AMIConnectionLost,
    AMIError,
    AMIMessageTooLarge,
    AMINotConnected,
    AMITimeout,
)
from pbx.ami.events import EventCallback, EventDispatcher
from pbx.ami.protocol import AMIInjectionError
from pbx.ami.service import AMIService, default_retry_policy

__all__ = [
    "AMIActionError",
    "AMIActions",
    "AMIAuthenticationError",
    "AMIClient",
    "AMIClientFactory",
    "AMIConnectionLost",
    "AMIError",
    "AMIInjectionError",
    "AMIMessageTooLarge",
    "AMINotConnected",
    "AMIProtocol",
    "AMIService",
    "AMITimeout",
    "Credentials",
    "EventCallback",
    "EventDispatcher",
    "ListResult",
    "default_retry_policy",
]
