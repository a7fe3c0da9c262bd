"""RAPI v2: Ganeti's Remote API served by masterd (see ``server.create_app``).

Mirrors ``ganeti.rapi`` and ``ganeti.server.rapi``: the same URIs, access
rules (users file with ``read``/``write`` options) and JSON shapes, so
Ganeti RAPI clients work unchanged.
"""

RAPI_ACCESS_WRITE = "write"
RAPI_ACCESS_READ = "read"
RAPI_ACCESS_ALL = frozenset({RAPI_ACCESS_WRITE, RAPI_ACCESS_READ})

# Realm of HTTP Basic authentication; fixed because {HA1} passwords hash it.
RAPI_REALM = "Ganeti Remote API"
