"""The HTTP API and the pages: the DPO's desk, the auditors' search and reports, users."""
