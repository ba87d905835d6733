"""Jinja2 templates of the Asterisk configuration, rendered from the center's config."""
