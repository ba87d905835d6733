"""Panic alerts: device enrolment, alert intake, incidents, operator-first callbacks, buttons.

``service.AlertService`` ties them together; ``dispatcher.api`` is its HTTP face.
"""
