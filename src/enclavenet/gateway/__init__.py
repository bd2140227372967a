"""The EnclaveNet gateway: any Ethereum tool, unchanged, talks to a confidential chain.

``enclavenet gateway --node URL [--l1-rpc URL] [--port N] [--account KEY]`` serves standard
Ethereum JSON-RPC (HTTP and WebSocket) on 127.0.0.1 and does the confidential part itself:
it seals transactions to the epoch key, keeps their receipt keys and decrypts their receipts,
and signs view requests under viewing sessions users authorised (docs/GATEWAY.md).
"""

from .core import GatewayCore
from .server import Gateway, serve_main
from .sessions import SessionStore

__all__ = ["Gateway", "GatewayCore", "SessionStore", "serve_main"]
