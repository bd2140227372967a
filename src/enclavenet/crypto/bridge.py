"""L1 bridge formats: ERC20 deposits and L1 -> contract calls in, L2 -> L1 messages out.

Shared by the enclave (which honours the commands and builds the outbox), the L1 ``Bridge``
contract (contracts/Bridge.vy, which sends the commands and relays the messages) and the
clients. docs/BRIDGE.md explains the flows and the trust argument.

**In (L1 -> EnclaveNet).** ``Bridge.depositERC20`` and ``Bridge.sendMessage`` put a *cleartext*
command into the Rollup's inbox with ``Rollup.submit(payload)``; the Rollup records the Bridge as
the message's L1 sender. The enclave treats a payload as a bridge command only when that sender
is the Bridge of its (measured) config and the payload starts with ``COMMAND_MAGIC``; anyone else
submitting the same bytes gets an ordinary envelope that does not open. Commands::

    COMMAND_MAGIC || abi.encode(uint256 1, address token, address from, address to,
                                uint256 amount, uint256 decimals)             # ERC20 deposit
    COMMAND_MAGIC || abi.encode(uint256 2, address from, address target,
                                uint256 gas_limit, bytes data)                # L1 -> contract call

A deposit mints ``amount`` of the canonical token of ``token`` (``l2_token_address``) to
``to``; a call runs ``target`` with ``data`` from ``l1_alias(from)`` (L1 address + 0x1111..1111,
as OP Stack's aliasing: no EnclaveNet key can sign for it).

**Out (EnclaveNet -> L1).** A contract calls the outbox system contract (``OUTBOX_ADDRESS``)
with ``target (20 bytes) || data``; each such call of a successful transaction becomes a
message, numbered in batch order::

    item = abi.encode(uint256 height, uint256 index, address sender, address target, bytes data)

The batch data carries the items after the receipt entries, and the meta gains
``n_messages`` and ``l2_to_l1_messages_root`` = ``merkle_root([keccak256(item)])`` (the
longest key of the canonical CBOR map, so its encoding is the meta's last ``META_SUFFIX_LEN``
bytes: ``META_ROOT_PREFIX || root``). ``Bridge.relayMessage`` checks, for a header accepted on
L1, the meta as leaf 0 of the header's ``data_commitment``, the root at the meta's end, and the
item under it; it runs a message once (``keccak256(item)`` is its id). An ERC20 withdrawal is a
message from a canonical token to the Bridge with ``data = abi.encode(address l1_token,
address recipient, uint256 amount)``; the Bridge pays it only if the sender is
``l2_token_address(l1_token)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from .hashing import address_bytes, keccak256, to_checksum
from .merkle import merkle_proof, merkle_root

COMMAND_MAGIC = b"ENB\x01"
KIND_ERC20_DEPOSIT = 1
KIND_CALL = 2
MAX_CALL_DATA = 4096  # Bridge.MAX_DATA: calldata of an L1 -> contract call
MAX_MESSAGE_DATA = 4096  # Bridge.MAX_DATA: data of an L2 -> L1 message
MAX_MESSAGES_PER_BATCH = 1024  # the rest of a batch's outbox calls fail (the tx reverts)
DEPOSIT_GAS = 200_000  # the gas a deposit's mint gets
# reserved EnclaveNet addresses (0x..57d0 withdraw, 57d1 key policy, 57d2 platform, 57d3 its
# system caller, 57d4 log queries)
OUTBOX_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d5")
TOKEN_IMPL_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d6")
TOKEN_FACTORY_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d7")
BRIDGE_CALLER = bytes.fromhex("00000000000000000000000000000000000057d8")
ALIAS_OFFSET = 0x1111000000000000000000000000000000001111
OUTBOX_TOPIC = keccak256(b"EnclaveNet.L2ToL1Message.v1")
META_ROOT_KEY = "l2_to_l1_messages_root"
META_COUNT_KEY = "n_messages"
# canonical CBOR of the key (text, 22 bytes) then the 32-byte byte string's head
META_ROOT_PREFIX = bytes([0x60 + len(META_ROOT_KEY)]) + META_ROOT_KEY.encode() + b"\x58\x20"
META_SUFFIX_LEN = len(META_ROOT_PREFIX) + 32
# EIP-1167 proxy init code as Vyper's create_minimal_proxy_to emits it, around the target
_PROXY_PRE = bytes.fromhex("602d3d8160093d39f3363d3d373d3d3d363d73")
_PROXY_POST = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
PROXY_INITCODE = _PROXY_PRE + TOKEN_IMPL_ADDRESS + _PROXY_POST
PROXY_INITCODE_HASH = keccak256(PROXY_INITCODE)


class BridgeFormatError(ValueError):
    """A bridge command or message that does not parse."""


def l1_alias(l1_address: str | bytes) -> bytes:
    """The EnclaveNet address an L1 account's calls come from (OP Stack's aliasing)."""
    a = int.from_bytes(address_bytes(l1_address), "big")
    return ((a + ALIAS_OFFSET) % (1 << 160)).to_bytes(20, "big")


def l2_token_address(l1_token: str | bytes) -> bytes:
    """The canonical EnclaveNet token of an L1 ERC20: CREATE2 by the token factory, salt = the
    L1 token address (left-padded), init code = the minimal proxy to the token implementation."""
    salt = address_bytes(l1_token).rjust(32, b"\x00")
    return keccak256(b"\xff", TOKEN_FACTORY_ADDRESS, salt, PROXY_INITCODE_HASH)[12:]


@dataclass(frozen=True)
class Erc20Deposit:
    token: bytes
    sender: bytes
    to: bytes
    amount: int
    decimals: int


@dataclass(frozen=True)
class L1Call:
    sender: bytes
    target: bytes
    gas_limit: int
    data: bytes


def encode_deposit(token: str | bytes, sender: str | bytes, to: str | bytes, amount: int, decimals: int) -> bytes:
    return COMMAND_MAGIC + abi_encode(
        ["uint256", "address", "address", "address", "uint256", "uint256"],
        [KIND_ERC20_DEPOSIT, to_checksum(token), to_checksum(sender), to_checksum(to), amount, decimals],
    )


def encode_call(sender: str | bytes, target: str | bytes, gas_limit: int, data: bytes) -> bytes:
    return COMMAND_MAGIC + abi_encode(
        ["uint256", "address", "address", "uint256", "bytes"],
        [KIND_CALL, to_checksum(sender), to_checksum(target), gas_limit, data],
    )


def is_command(payload: bytes) -> bool:
    return payload.startswith(COMMAND_MAGIC)


def parse_command(payload: bytes) -> Erc20Deposit | L1Call:
    """A bridge command's fields; BridgeFormatError if it is not one (exact ABI lengths)."""
    if not payload.startswith(COMMAND_MAGIC) or len(payload) < len(COMMAND_MAGIC) + 32:
        raise BridgeFormatError("not a bridge command (magic)")
    body = payload[len(COMMAND_MAGIC):]
    kind = int.from_bytes(body[:32], "big")
    try:
        if kind == KIND_ERC20_DEPOSIT:
            if len(body) != 6 * 32:
                raise BridgeFormatError("an ERC20 deposit command is 6 words")
            _, token, sender, to, amount, decimals = abi_decode(
                ["uint256", "address", "address", "address", "uint256", "uint256"], body, strict=True
            )
            if decimals > 255:
                raise BridgeFormatError("decimals above 255")
            return Erc20Deposit(address_bytes(token), address_bytes(sender), address_bytes(to), amount, decimals)
        if kind == KIND_CALL:
            _, sender, target, gas_limit, data = abi_decode(
                ["uint256", "address", "address", "uint256", "bytes"], body, strict=True
            )
            if len(data) > MAX_CALL_DATA:
                raise BridgeFormatError(f"call data above {MAX_CALL_DATA} bytes")
            canonical = encode_call(sender, target, gas_limit, data)
            if canonical != payload:
                raise BridgeFormatError("a call command must be canonically ABI-encoded")
            return L1Call(address_bytes(sender), address_bytes(target), gas_limit, data)
    except BridgeFormatError:
        raise
    except Exception as exc:  # eth_abi's decoding errors
        raise BridgeFormatError(f"bridge command does not decode ({type(exc).__name__})") from None
    raise BridgeFormatError(f"unknown bridge command kind {kind}")


@dataclass(frozen=True)
class L2ToL1Message:
    height: int
    index: int
    sender: bytes
    target: bytes
    data: bytes

    def encode(self) -> bytes:
        return abi_encode(
            ["uint256", "uint256", "address", "address", "bytes"],
            [self.height, self.index, to_checksum(self.sender), to_checksum(self.target), self.data],
        )

    @property
    def id(self) -> bytes:
        """keccak256 of the item: the Bridge's replay key (height and index are in it)."""
        return keccak256(self.encode())

    @classmethod
    def decode(cls, item: bytes) -> L2ToL1Message:
        try:
            h, i, s, t, d = abi_decode(["uint256", "uint256", "address", "address", "bytes"], item, strict=True)
        except Exception as exc:
            raise BridgeFormatError(f"an L2 -> L1 message item does not decode ({type(exc).__name__})") from None
        m = cls(h, i, address_bytes(s), address_bytes(t), d)
        if m.encode() != item:
            raise BridgeFormatError("an L2 -> L1 message item must be canonically ABI-encoded")
        return m


def messages_root(items: list[bytes]) -> bytes:
    return merkle_root([keccak256(x) for x in items])


def message_proof(items: list[bytes], index: int) -> tuple[int, list[bytes]]:
    """(path, siblings from the leaf up) of item ``index`` (crypto.dap.piece_path's format)."""
    from .dap import piece_path

    path, _ = piece_path(index, len(items))
    return path, [sib for sib, _ in merkle_proof([keccak256(x) for x in items], index)]


def root_of_meta(meta: bytes) -> bytes | None:
    """The messages root at the end of a batch meta (None if the meta carries none)."""
    if len(meta) < META_SUFFIX_LEN or meta[-META_SUFFIX_LEN:-32] != META_ROOT_PREFIX:
        return None
    return meta[-32:]


def withdrawal_data(l1_token: str | bytes, recipient: str | bytes, amount: int) -> bytes:
    return abi_encode(["address", "address", "uint256"], [to_checksum(l1_token), to_checksum(recipient), amount])


__all__ = [
    "BRIDGE_CALLER",
    "COMMAND_MAGIC",
    "OUTBOX_ADDRESS",
    "OUTBOX_TOPIC",
    "PROXY_INITCODE_HASH",
    "TOKEN_FACTORY_ADDRESS",
    "TOKEN_IMPL_ADDRESS",
    "BridgeFormatError",
    "Erc20Deposit",
    "L1Call",
    "L2ToL1Message",
    "encode_call",
    "encode_deposit",
    "is_command",
    "l1_alias",
    "l2_token_address",
    "message_proof",
    "messages_root",
    "parse_command",
    "root_of_meta",
    "withdrawal_data",
]
