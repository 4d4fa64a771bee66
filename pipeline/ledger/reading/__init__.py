"""The read side: filtered entry streams and statistics, what a person typed turned into
filters, audited reads that leave an entry, a period's history for a replay, and what
reconcile compares."""
