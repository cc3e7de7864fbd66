"""Tests of the classic commit protocols (herald.txn)."""
