"""The center's figures for Prometheus: ``/metrics``, read from the live parts at scrape time."""
