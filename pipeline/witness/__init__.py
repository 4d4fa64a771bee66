"""A witness of other logs (C2SP tlog-witness), run by a trust or a local authority for its
schools: it cosigns only checkpoints that extend the ones it cosigned before."""
