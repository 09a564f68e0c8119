"""The replica comparison: is every source tag at the replica, the same and verified there."""
