"""The EnclaveNet explorer and operator dashboard (``enclavenet explorer --node URL --l1-rpc URL``).

Untrusted glue: it reads only public data -- the L1 (events, ``submitHeader`` calldata, views)
and the nodes' public ``enclavenet_status`` -- and renders HTML on the server (``pages.py``,
inline SVG charts, no CDN). ``data.py`` polls, ``server.py`` serves. docs/OPERATIONS.md.
"""

from .data import ExplorerData, View
from .server import ExplorerServer, run_explorer

__all__ = ["ExplorerData", "ExplorerServer", "View", "run_explorer"]
