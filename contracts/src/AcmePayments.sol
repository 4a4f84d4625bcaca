// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

/// @title ACME Rentals payment contract
/// @notice A customer pays for a booking by calling `pay(bookingRef)` with the quoted amount.
///         Every payment is forwarded to the merchant wallet in the same transaction, so this
///         contract never holds funds, and each payment is announced by a `Paid` event that the
///         portal's chain watcher reads.
/// @dev    `bookingRef` is the 32-byte reference the portal generated for one price quote; the
///         portal, not this contract, decides what a payment is worth.
contract AcmePayments {
    address public owner;
    address payable public merchant;
    bool public paused;

    /// Indexed so that the watcher can filter by booking and by payer.
    event Paid(bytes32 indexed bookingRef, address indexed payer, uint256 amount);
    event MerchantChanged(address indexed previousMerchant, address indexed newMerchant);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event PausedChanged(bool paused);

    error NotOwner();
    error ZeroAddress();
    error ZeroAmount();
    error PaymentsPaused();
    error PlainTransferRefused();
    error ForwardFailed();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    constructor(address payable merchant_) {
        if (merchant_ == address(0)) revert ZeroAddress();
        owner = msg.sender;
        merchant = merchant_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit MerchantChanged(address(0), merchant_);
    }

    /// @notice Pay for the booking quote identified by `bookingRef`; the value is forwarded.
    function pay(bytes32 bookingRef) external payable {
        if (paused) revert PaymentsPaused();
        if (msg.value == 0) revert ZeroAmount();
        // Effects before the external call; a revert below undoes the event with it.
        emit Paid(bookingRef, msg.sender, msg.value);
        (bool ok, ) = merchant.call{value: msg.value}("");
        if (!ok) revert ForwardFailed();
    }

    /// Plain transfers carry no booking reference, so they could never be matched: refuse them.
    receive() external payable {
        revert PlainTransferRefused();
    }

    fallback() external payable {
        revert PlainTransferRefused();
    }

    function setMerchant(address payable newMerchant) external onlyOwner {
        if (newMerchant == address(0)) revert ZeroAddress();
        emit MerchantChanged(merchant, newMerchant);
        merchant = newMerchant;
    }

    function setPaused(bool paused_) external onlyOwner {
        paused = paused_;
        emit PausedChanged(paused_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Ether can still be forced in without a call (e.g. by another contract's
    ///         selfdestruct); pass any such balance on to the merchant.
    function sweep() external onlyOwner {
        uint256 balance = address(this).balance;
        if (balance == 0) revert ZeroAmount();
        (bool ok, ) = merchant.call{value: balance}("");
        if (!ok) revert ForwardFailed();
    }
}
