"""The trusted enclave program: keys, confidential EVM, batch executor, signer.

Nothing reaches it but ``EnclaveProgram.ecall(method, payload)`` (see docs/ENCLAVE.md).
Imports only ``enclavenet.crypto``, pyrevm and cbor2 -- never node, chain, client or dap.
"""

from .errors import EnclaveRefusal

__all__ = ["EnclaveRefusal"]
