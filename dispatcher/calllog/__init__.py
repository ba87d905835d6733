"""The call log: every citizen journey on record, and the supervisors' reports.

Layout: ``models`` (tables), ``db`` (engines, schema upgrade), ``store`` (one DAO function per
operation, all synchronous, run off the reactor thread), ``writer`` (hands writes from the
reactor to a dedicated thread), ``journey`` (sans-IO journey builder fed AMI events), ``cel``
(reconciliation from Asterisk's CEL CSV), ``report`` (aggregates in SQL, renders HTML/CSV/JSON),
``cli`` (``siaga db upgrade`` and ``siaga report``).
"""
