"""When a source address is blocked: failed authentications in a sliding window (sans-IO).

The policy is fed failures (the source address of each failed registration or challenge)
and asked what is blocked; time comes from the clock it is given (``IReactorTime``, a
``task.Clock`` in tests). It never sees calls: a citizen who dials the hotline often causes
no failure, so only addresses that fail to authenticate can ever be blocked.

Memory is bounded whatever a flood of spoofed UDP sources sends: at most ``max_sources``
windows (the least recently failing source is forgotten first) and ``max_blocks`` blocks
(the one that would end first makes room).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from dispatcher.config.model import Security

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Block:
    """An address refused until ``until`` (clock seconds), after ``failures`` failures."""

    address: str
    since: float
    until: float
    failures: int


class GuardPolicy:
    """Sliding windows of failures per source address, and the blocks they cause."""

    def __init__(self, settings: Security, clock: IReactorTime, *,
                 trusted: Iterable[str] = (), max_sources: int = 10_000,
                 max_blocks: int = 1_000) -> None:
        self.settings = settings
        self.clock = clock
        # Never blocked besides the staff networks: the trunk's address (a UDP sender could
        # forge failures from it and cut every citizen who calls through the carrier off).
        self._never = settings.staff_networks + tuple(
            ipaddress.ip_network(a, strict=False) for a in trusted if _is_ip(a))
        self.max_sources = max_sources
        self.max_blocks = max_blocks
        # address -> times of its failures within the window, oldest first
        self._windows: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocks: dict[str, Block] = {}

    def exempt(self, address: str) -> bool:
        """True for an address in the staff phones' networks or trusted (never blocked)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._never)

    def failure(self, address: str) -> Block | None:
        """Count one failed authentication from ``address``; the new Block if it is one.

        An address already blocked sends nothing Asterisk can authenticate (the ACL refuses
        it first), so failures from it are not counted and never lengthen its block.
        """
        if address in self._blocks or self.exempt(address):
            return None
        now = self.clock.seconds()
        window = self._windows.pop(address, None)
        if window is None:
            window = deque()
        window.append(now)
        horizon = now - self.settings.window_seconds
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) < self.settings.block_after:
            self._windows[address] = window  # re-inserted last: the most recently failing
            while len(self._windows) > self.max_sources:
                self._windows.popitem(last=False)
            return None
        block = Block(address, now, now + self.settings.block_seconds, len(window))
        if len(self._blocks) >= self.max_blocks:
            first = min(self._blocks.values(), key=lambda b: b.until)
            del self._blocks[first.address]
        self._blocks[address] = block
        return block

    def expire(self) -> list[Block]:
        """End the blocks whose time is up; return them."""
        now = self.clock.seconds()
        ended = [b for b in self._blocks.values() if b.until <= now]
        for block in ended:
            del self._blocks[block.address]
        return ended

    def next_expiry(self) -> float | None:
        """When the first block ends (clock seconds), or None without blocks."""
        return min((b.until for b in self._blocks.values()), default=None)

    def blocked(self) -> list[Block]:
        """The blocks in force, by address (a stable order for the rendered ACL)."""
        return [self._blocks[a] for a in sorted(self._blocks, key=_address_key)]

    def tracked(self) -> int:
        """How many source addresses have failures being counted."""
        return len(self._windows)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _address_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from their text (for tests and callers building settings by hand)."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)
