"""The Asterisk Manager Interface: sans-IO protocol, Twisted client, live model."""
