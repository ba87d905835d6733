"""The fixed numbers of the pjsua build in the wheel, and the audio clock every part uses.

Compile-time limits: 8 accounts and 8 transports (PJSUA_MAX_ACC, PJSUA_MAX_TRANSPORTS; one
more account is an assertion that kills the process, so the stack checks first) and 4 calls at
a time (PJSUA_MAX_CALLS; pjsua refuses a fifth with PJ_ETOOMANY and rejects a fifth incoming
call itself).
"""

from __future__ import annotations

MAX_PHONES = 8
MAX_CALLS = 4
# Asterisk, the recorders and the tone checks all work at 8 kHz (G.711).
CLOCK_RATE = 8000
