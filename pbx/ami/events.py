"""Routing AMI events to subscribers by event name."""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from pbx.ami.protocol import Message

log = Logger(namespace="pbx.ami")

EventCallback = Callable[[Message], object]


class EventDispatcher:
    """Subscriptions by AMI event name plus catch-all ones.

    A subscriber that raises is logged with its traceback and the event goes on to the
    others: one faulty listener neither hides its error nor breaks the connection.
    """

    def __init__(self) -> None:
        # Tuples, replaced on (un)subscribe: dispatch iterates them without copying, and a
        # subscriber may unsubscribe while being called.
        self._by_name: dict[str, tuple[EventCallback, ...]] = {}
        self._all: tuple[EventCallback, ...] = ()

    def subscribe(self, name: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for each event named ``name``; return an unsubscriber."""
        self._by_name[name] = (*self._by_name.get(name, ()), callback)

        def unsubscribe() -> None:
            callbacks = list(self._by_name.get(name, ()))
            if callback in callbacks:
                callbacks.remove(callback)
                if callbacks:
                    self._by_name[name] = tuple(callbacks)
                else:
                    del self._by_name[name]

        return unsubscribe

    def subscribe_all(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; return an unsubscriber."""
        self._all = (*self._all, callback)

        def unsubscribe() -> None:
            callbacks = list(self._all)
            if callback in callbacks:
                callbacks.remove(callback)
                self._all = tuple(callbacks)

        return unsubscribe

    def dispatch(self, event: Message) -> None:
        """Hand ``event`` to its subscribers, logging (never propagating) their errors."""
        callbacks = self._by_name.get(event.name)
        if callbacks:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:
                    log.failure("AMI subscriber {callback!r} failed on {name} event",
                                callback=callback, name=event.name)
        for callback in self._all:
            try:
                callback(event)
            except Exception:
                log.failure("AMI subscriber {callback!r} failed on {name} event",
                            callback=callback, name=event.name)
