"""The brain: config, journeys, routing, alerts, incidents, call log, HTTP API, the CLI."""
