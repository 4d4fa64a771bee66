"""A pupil's data kept no longer than it may be: erasure on request, retention due, and
the replacement of the pseudonym key."""
