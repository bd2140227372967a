// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PrivateToken
/// @notice An ERC20 token whose balances are private even from other users.
/// On EnclaveNet the whole contract state is hidden from the L1 and the hosts; view calls are
/// signed, so `msg.sender` in a view is the real caller. That lets a contract decide who may read
/// what: here only an account itself may read its balance, and only the owner or the spender an
/// allowance. Everything else is a standard ERC20 (a DEX can trade it unchanged).
contract PrivateToken {
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    string public name;
    string public symbol;
    uint8 public constant decimals = 18;
    uint256 public totalSupply;

    mapping(address => uint256) private _balances;
    mapping(address => mapping(address => uint256)) private _allowances;

    constructor(string memory name_, string memory symbol_, uint256 supply) {
        name = name_;
        symbol = symbol_;
        totalSupply = supply;
        _balances[msg.sender] = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function balanceOf(address account) external view returns (uint256) {
        require(msg.sender == account, "balance is private");
        return _balances[account];
    }

    function allowance(address owner, address spender) external view returns (uint256) {
        require(msg.sender == owner || msg.sender == spender, "allowance is private");
        return _allowances[owner][spender];
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        _allowances[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = _allowances[from][msg.sender];
        require(allowed >= amount, "allowance too low");
        _allowances[from][msg.sender] = allowed - amount;
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        require(to != address(0), "transfer to the zero address");
        require(_balances[from] >= amount, "balance too low");
        _balances[from] -= amount;
        _balances[to] += amount;
        emit Transfer(from, to, amount);
    }
}
