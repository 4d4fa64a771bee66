"""The files an MIS already writes (Common Transfer Files, School Census returns) read
as contract events; the watcher that sends them from an MIS's export folder."""
