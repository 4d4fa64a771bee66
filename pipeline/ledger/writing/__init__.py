"""The write path: records decided and sealed in batches, acts (reads, changes of users,
notices, adoptions) appended, pupils' pseudonyms, the alert outbox and the receipts owed
for each record."""
