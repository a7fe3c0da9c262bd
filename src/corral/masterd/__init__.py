"""The master daemon: config store, job queue, locks and the client API.

Mirrors Ganeti's ``ganeti-luxid``/``ganeti-wconfd`` pair in one process:
:mod:`corral.masterd.main` wires everything, :class:`~corral.masterd.master.Master`
is the in-process boundary (LUXI methods) used by the unix-socket API
(:mod:`corral.masterd.api`) and by RAPI, and
:class:`~corral.masterd.client.MasterClient` is the client side.
"""
