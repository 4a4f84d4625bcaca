// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

interface IAcmePayments {
    function pay(bytes32 bookingRef) external payable;
}

/// @notice TEST ONLY (never deployed by the portal): pays two bookings in one transaction,
///         as a smart-contract wallet's batch could, so the tests can prove that the portal
///         never lets one transaction pay for two bookings.
contract BatchPayer {
    function payTwo(IAcmePayments target, bytes32 refA, uint256 amountA,
                    bytes32 refB, uint256 amountB) external payable {
        require(msg.value == amountA + amountB, "value must equal the two amounts");
        target.pay{value: amountA}(refA);
        target.pay{value: amountB}(refB);
    }
}
