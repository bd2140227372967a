// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title A private vote: the tally is public, the ballots are not.
/// @notice An ordinary contract. On EnclaveNet its state is confidential, so the ballots are
/// hidden from the L1, the hosts and the other voters with no commit-reveal round; view calls
/// are signed, so `ballotOf` can answer the voter alone. The tally and the turnout are
/// readable by anyone once the chair closes the vote, and by nobody before.
contract PrivateVote {
    address public immutable chair;
    uint256 public immutable options;
    bool public closed;

    mapping(address => bool) public eligible;
    mapping(address => uint256) private ballot; // option + 1; 0 = has not voted
    uint256[] private counts;
    uint256 private voters;

    event Voted(address indexed voter); // readable by the voter (and the sender): docs/CLIENT.md
    event Closed(uint256 turnout);

    constructor(uint256 nOptions, address[] memory electorate) {
        require(nOptions >= 2 && nOptions <= 16, "between 2 and 16 options");
        chair = msg.sender;
        options = nOptions;
        counts = new uint256[](nOptions);
        for (uint256 i = 0; i < electorate.length; i++) {
            eligible[electorate[i]] = true;
        }
    }

    function vote(uint256 option) external {
        require(!closed, "the vote is closed");
        require(eligible[msg.sender], "not on the electorate");
        require(ballot[msg.sender] == 0, "already voted");
        require(option < options, "no such option");
        ballot[msg.sender] = option + 1;
        counts[option] += 1;
        voters += 1;
        emit Voted(msg.sender);
    }

    function close() external {
        require(msg.sender == chair, "only the chair closes the vote");
        require(!closed, "already closed");
        closed = true;
        emit Closed(voters);
    }

    /// @notice A voter's own ballot, to that voter only.
    function ballotOf(address voter) external view returns (uint256) {
        require(msg.sender == voter, "a ballot is readable by its voter only");
        require(ballot[voter] != 0, "has not voted");
        return ballot[voter] - 1;
    }

    function tally() external view returns (uint256[] memory) {
        require(closed, "the tally is public once the vote is closed");
        return counts;
    }

    function turnout() external view returns (uint256) {
        require(closed, "the turnout is public once the vote is closed");
        return voters;
    }
}
