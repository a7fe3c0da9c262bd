"""Node-side functions called by noded, one module per area.

Every function is named like its procedure in :mod:`corral.rpc.defs` and has
the signature ``fn(paths: Paths, *args)`` with the positional arguments of
the table. Failures raise :class:`corral.errors.RPCFail` (or another
:class:`corral.errors.CorralError`); noded turns them into ``[false, message]``.
Backend functions never read the cluster configuration: the master sends
what they need.
"""
