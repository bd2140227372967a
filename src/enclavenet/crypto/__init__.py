"""Shared cryptography and wire formats (trusted, small).

Used by the enclave, the client, the node and the contracts' tests. Imports nothing
from the rest of the package.
"""
