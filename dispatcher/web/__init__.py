"""The console on the web: staff login, the wallboard, supervisors' reports."""
