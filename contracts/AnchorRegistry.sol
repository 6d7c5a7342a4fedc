// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title AnchorRegistry
/// @notice Stores the Merkle root of each Ancla batch of purchase-order
/// records. Batches are numbered 1, 2, 3, ... with no gaps: a retried or
/// duplicated anchoring transaction reverts instead of anchoring twice, and a
/// missing batch is visible to anyone reading the chain.
/// @dev Leaves follow OpenZeppelin's StandardMerkleTree with leaf encoding
/// ["bytes32"]: leaf = keccak256(bytes.concat(keccak256(abi.encode(recordHash)))).
contract AnchorRegistry is AccessControl {
    /// @notice Role allowed to anchor batches (the operator's signing key).
    bytes32 public constant ANCHORER_ROLE = keccak256("ANCHORER_ROLE");

    /// @notice The id the next anchored batch must carry. Starts at 1 so that
    /// a zero batch id never names a real batch.
    uint256 public nextBatchId = 1;

    /// @dev batch id => Merkle root; zero means "not anchored".
    mapping(uint256 batchId => bytes32 root) private _roots;

    /// @notice Emitted once per anchored batch.
    event BatchAnchored(uint256 indexed batchId, bytes32 indexed root, uint256 leafCount);

    /// @notice The batch id is not the next one in sequence.
    error UnexpectedBatchId(uint256 expected, uint256 given);
    /// @notice A zero root cannot be told apart from "not anchored".
    error ZeroRoot();
    /// @notice A batch holds at least one record.
    error EmptyBatch();
    /// @notice Roles granted to the zero address could never be used or managed.
    error ZeroAddress();

    constructor(address admin, address anchorer) {
        if (admin == address(0) || anchorer == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ANCHORER_ROLE, anchorer);
    }

    /// @notice Anchor the root of batch `batchId`, which must equal `nextBatchId`.
    function anchor(uint256 batchId, bytes32 root, uint256 leafCount) external onlyRole(ANCHORER_ROLE) {
        uint256 expected = nextBatchId;
        if (batchId != expected) revert UnexpectedBatchId(expected, batchId);
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert EmptyBatch();
        _roots[batchId] = root;
        unchecked {
            nextBatchId = expected + 1;
        }
        emit BatchAnchored(batchId, root, leafCount);
    }

    /// @notice The root anchored for `batchId`, or zero if there is none.
    function rootOf(uint256 batchId) external view returns (bytes32) {
        return _roots[batchId];
    }

    /// @notice The leaf of `recordHash` as StandardMerkleTree(["bytes32"]) computes it.
    function leafOf(bytes32 recordHash) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(recordHash))));
    }

    /// @notice Whether `recordHash` is in batch `batchId`, given its proof.
    function verify(uint256 batchId, bytes32 recordHash, bytes32[] calldata proof) external view returns (bool) {
        bytes32 root = _roots[batchId];
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leafOf(recordHash));
    }
}
