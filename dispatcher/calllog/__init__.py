"""The call log: every citizen journey on record, and the supervisors' reports.

Layout: ``models`` (tables), ``db`` (engines, schema upgrade), ``store`` (one DAO function per
operation, all synchronous, run off the reactor thread), ``writer`` (hands writes from the
reactor to a dedicated thread), ``cel`` (reconciliation from Asterisk's CEL CSV), ``report``
(aggregates in SQL, renders HTML/CSV/JSON), ``cli`` (``siaga db upgrade`` and ``siaga report``).

The journeys, sans-IO, one concern a module: ``records`` (what a journey produces),
``directory`` (who a channel belongs to), ``legs`` (a journey's leg tables and its outcome),
``marks`` (the dialplan's ``SIAGA_*`` facts), ``phases`` (the ``(phase, fact) -> (effects,
next phase)`` table and the effects), ``machine_base`` and ``machine`` (one journey's steps),
``ami_events`` (what each AMI event tells a journey), ``journey`` (the tracker that owns the
live journeys and applies their effects; the public names).
"""
