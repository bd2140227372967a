"""EnclaveNet: confidential smart contracts executed off-chain by a committee of
heterogeneous TEEs, anchored on an Ethereum L1.

Trust boundary (see docs/ARCHITECTURE.md):
  trusted   -- ``crypto`` (shared formats), ``enclave`` (the enclave program), ``tee``
               (platforms, quotes, sealing, the ecall boundary), ``contracts`` (L1).
  untrusted -- ``chain``, ``node``, ``dap``, ``client``, ``cli``: glue whose bugs may cost
               liveness, never safety or secrecy.
"""

__version__ = "0.1.0"
