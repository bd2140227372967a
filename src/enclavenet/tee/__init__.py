"""TEE platforms, quotes, sealing and the ecall process boundary (trusted; see docs/TEE.md).

* ``platform``: simulated vendors/platforms (sgx, tdx, sev-snp, csv), ``measure_enclave``,
  ``Quote`` and ``verify_quote(quote, trusted_roots) -> QuoteClaims``.
* ``sealing``: AES-GCM sealing bound to platform instance and measurement.
* ``counter``: the machine's monotonic counters (rollback protection of sealed state).
* ``wire`` / ``server`` / ``runner`` / ``boundary``: the ecall boundary
  (``ProcessEnclave``, ``InProcessEnclave``, ``EnclaveError``/``EnclaveTimeout``/``EnclaveCrashed``).
* ``dcap``: real SGX/TDX DCAP verification (dcap-qvl) and the attestation-verifier enclave.
"""

from .boundary import (
    Enclave,
    EnclaveCrashed,
    EnclaveError,
    EnclaveTimeout,
    InProcessEnclave,
    ProcessEnclave,
)
from .counter import CounterConflict, CounterError, CounterValue
from .platform import (
    CsvPlatform,
    EnclavePlatform,
    Quote,
    QuoteClaims,
    QuoteError,
    SevSnpPlatform,
    SgxPlatform,
    SimulatedPlatform,
    SimulatedVendor,
    TdxPlatform,
    measure_enclave,
    report_data_binding,
    verify_quote,
)
from .sealing import SealingError
from .server import DEFAULT_PROGRAM

__all__ = [
    "DEFAULT_PROGRAM",
    "CounterConflict",
    "CounterError",
    "CounterValue",
    "CsvPlatform",
    "Enclave",
    "EnclaveCrashed",
    "EnclaveError",
    "EnclavePlatform",
    "EnclaveTimeout",
    "InProcessEnclave",
    "ProcessEnclave",
    "Quote",
    "QuoteClaims",
    "QuoteError",
    "SealingError",
    "SevSnpPlatform",
    "SgxPlatform",
    "SimulatedPlatform",
    "SimulatedVendor",
    "TdxPlatform",
    "measure_enclave",
    "report_data_binding",
    "verify_quote",
]
