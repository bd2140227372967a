// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Counter
/// @notice A counter that, when bumped, also bumps the next counter in a chain (if any):
/// the smallest example of one confidential contract calling another inside the enclave.
contract Counter {
    event Bumped(address indexed by, uint256 count);

    uint256 public count;
    Counter public immutable next;

    constructor(Counter next_) {
        next = next_;
    }

    /// Add `by` here and in every counter down the chain; returns the chain's total.
    function bump(uint256 by) external returns (uint256 total) {
        require(by > 0, "bump by at least 1");
        count += by;
        emit Bumped(msg.sender, count);
        total = count;
        if (address(next) != address(0)) {
            total += next.bump(by);
        }
    }

    /// The next counter's count, read through a static call (0 at the end of the chain).
    function nextCount() external view returns (uint256) {
        return address(next) == address(0) ? 0 : next.count();
    }
}
