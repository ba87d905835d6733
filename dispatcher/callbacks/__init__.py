"""Callbacks: the calls the center owes citizens, whatever made them owed.

One feature for both kinds: a hotline call that was abandoned or dropped, and a panic alert's
operator-first callback. Its parts:

* :mod:`~dispatcher.callbacks.states`: the one state table (pending → ringing_operator →
  ringing_citizen → done / failed, with retries); an illegal move raises.
* :mod:`~dispatcher.callbacks.missed`: which hotline calls are owed one, judged in one pure
  function from a call's facts, whether they come from AMI live or from a journey afterwards.
* :mod:`~dispatcher.callbacks.owed`: the hotline's bounded, ranked list of callbacks owed.
* :mod:`~dispatcher.callbacks.dialer`: the one dialer, and the policies that say who is rung
  first and how often (an operator's desk for the hotline, the queue's front for alerts).
* :mod:`~dispatcher.callbacks.store`: the one table they share, and the one restore at start.

Submodules are imported by name (this package imports none of them: the call log's store
reads the state table without loading the rest).
"""
