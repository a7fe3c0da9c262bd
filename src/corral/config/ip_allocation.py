"""Temporary reservations of network addresses for instance NICs.

Mirrors the IPv4 part of Ganeti's temporary reservation manager
(``WConfd.TempRes``: ``reserveIp``/``generateIp``): an address handed to a
job stays reserved until the job has committed the instance holding it
(which marks it in the network's pool) and dropped its reservations, so two
concurrent jobs never get the same address. Not thread-safe by itself: the
config store calls it under its lock.
"""

from __future__ import annotations

from corral import errors
from corral.netpool import AddressPool, AddressPoolError
from corral.objects import Network


class IpReservations:
    """Addresses reserved but not yet committed: ``(network UUID, IP) -> owner``."""

    def __init__(self) -> None:
        self._reserved: dict[tuple[str, str], str] = {}

    def reserved(self, net_uuid: str) -> set[str]:
        return {ip for (uuid, ip) in self._reserved if uuid == net_uuid}

    def reserve(self, net: Network, address: str, owner: str, check: bool = True) -> None:
        """Reserve ``address`` of ``net`` for ``owner``.

        Raises ``OpPrereqError`` ECODE_NOTUNIQUE when it is used by an
        instance or reserved by a job, externally reserved (only with
        ``check``, Ganeti's ``conflicts_check``) or not in the network
        (Ganeti's "IP address ... already in use or does not belong to
        network ..." wording).
        """
        why = ""
        try:
            pool = AddressPool(net)
            if pool.is_reserved(address) or (net.uuid, address) in self._reserved:
                why = "IP address already in use"
            elif check and pool.is_reserved(address, external=True):
                why = "IP is externally reserved"
        except AddressPoolError as err:
            why = str(err)
        if why:
            raise errors.OpPrereqError(
                f"IP address {address} already in use or does not belong to network "
                f"{net.name} ({why})", errors.ECODE_NOTUNIQUE)
        self._reserved[(net.uuid, address)] = owner

    def generate(self, net: Network, owner: str) -> str:
        """Reserve and return the first free address of ``net``; raises
        ``OpPrereqError`` ECODE_STATE when the pool is full."""
        try:
            address = AddressPool(net).generate_free(self.reserved(net.uuid))
        except AddressPoolError as err:
            raise errors.OpPrereqError(f"Unable to get a free IP from the address pool of "
                                       f"network {net.name}: {err}",
                                       errors.ECODE_STATE) from None
        self._reserved[(net.uuid, address)] = owner
        return address

    def release_owner(self, owner: str) -> None:
        for key in [k for k, o in self._reserved.items() if o == owner]:
            del self._reserved[key]
