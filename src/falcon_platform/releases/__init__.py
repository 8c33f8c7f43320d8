"""Releases: numbered release records, the pre-production gate, the canary judge and rollouts."""
