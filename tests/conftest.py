"""Shared test configuration: keep it small; fixtures live beside the tests that use them."""
