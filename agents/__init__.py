"""The Faust worker: the stream agents, the writer process that decides and appends,
and the alert relay."""
