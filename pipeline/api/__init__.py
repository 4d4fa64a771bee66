"""The HTTP API (and, later, the pages) of the breach desk and the auditors' reads."""
