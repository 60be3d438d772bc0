"""Peers: what a user would otherwise wire up, run on the same workload as ours."""
