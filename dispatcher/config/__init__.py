"""The center's config: one YAML file, loaded and validated into typed objects.

Everything else (Asterisk's configuration, IVR prompts, the database's reference rows) is
generated from the :class:`Center` :func:`load_center` returns. A bad value raises
:class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and the key, and nothing
is started.

Cut by concern: ``model`` (the :class:`Center` and its parts, the constants), ``loader``
(:func:`load_center`, the top level), ``directory`` (numbers, desks, agencies, buttons,
trunk, IVR) and ``network`` (endpoints, limits, TLS, metrics, security, retention, callback
bounds). Every name stays importable from ``dispatcher.config``.
"""

from __future__ import annotations

from dispatcher.config.loader import CenterParser, load_center
from dispatcher.config.model import (
    AGENCY_KINDS,
    DEFAULT_STATE_DIR,
    EXTENSION_RE,
    IVR_PROMPTS,
    LANGUAGE_KEYS,
    LANGUAGE_RE,
    LOOPBACK_NETWORKS,
    NUMBER_RE,
    QUEUE_NAME_FORBIDDEN,
    Agency,
    Button,
    Callbacks,
    Center,
    Endpoint,
    HttpLimits,
    Ivr,
    MetricsAccess,
    Operator,
    Queue,
    Retention,
    Security,
    Tls,
    Trunk,
    language_keys,
)
from dispatcher.selftest.settings import SelfTest
from dispatcher.yamlnodes import ConfigError

__all__ = [
    "AGENCY_KINDS",
    "DEFAULT_STATE_DIR",
    "EXTENSION_RE",
    "IVR_PROMPTS",
    "LANGUAGE_KEYS",
    "LANGUAGE_RE",
    "LOOPBACK_NETWORKS",
    "NUMBER_RE",
    "QUEUE_NAME_FORBIDDEN",
    "Agency",
    "Button",
    "Callbacks",
    "Center",
    "CenterParser",
    "ConfigError",
    "Endpoint",
    "HttpLimits",
    "Ivr",
    "MetricsAccess",
    "Operator",
    "Queue",
    "Retention",
    "Security",
    "SelfTest",
    "Tls",
    "Trunk",
    "language_keys",
    "load_center",
]
