"""The operator's console as a feature: who owns which call, the desk's live state, the
call card, actions on a call, incidents' notes and dispositions, supervisors' listening.

Sans-HTTP: the pages and their JSON endpoints live in ``dispatcher/web`` (``console_api.py``
for the plumbing every console endpoint shares); this package holds the rules they apply.
"""
