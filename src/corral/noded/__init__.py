"""The node daemon (Ganeti's ``ganeti-noded``): HTTPS with mutual TLS, one
``POST /<procedure>`` per call, dispatched to :mod:`corral.backend`."""
