"""Which addresses EnclaveNet's servers may bind: loopback, or a private (RFC 1918) address --
e.g. inside a network namespace of benchmarks/wan.py. Never 0.0.0.0 or a public address."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost",)


def private_bind_host(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not ip.is_unspecified and (ip.is_loopback or (ip.version == 4 and ip.is_private and not ip.is_link_local))


REFUSAL = "serves on 127.0.0.1 or a private (10/8, 172.16/12, 192.168/16) address only"
