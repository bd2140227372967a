"""The one error type the enclave program raises across the ecall boundary."""

from __future__ import annotations


class EnclaveRefusal(ValueError):
    """The enclave refuses a request: bad input, stale state, or a rule it will not break.

    The message says what was wrong and what to do; it never carries a secret (no private
    key, epoch key, state key or plaintext). The tee boundary returns it to the host as
    ``EnclaveError(message)``.
    """
