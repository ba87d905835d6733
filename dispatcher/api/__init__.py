"""The siaga server's HTTP JSON API (Twisted Web): alerts in, incidents out.

``make_http_service`` in :mod:`dispatcher.api.service` builds the listening service.
"""
