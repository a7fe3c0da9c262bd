"""Master -> node RPC: the call table (:mod:`corral.rpc.defs`) and the client.

``from corral.rpc import RpcRunner, RpcResult, NodeClient``.
"""

from __future__ import annotations

from corral.rpc.client import (NodeClient, RpcResult, RpcRunner, compress_content,
                               decompress_content)

__all__ = ["NodeClient", "RpcResult", "RpcRunner", "compress_content", "decompress_content"]
