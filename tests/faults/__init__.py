"""Fault tests: the chain's parts under real faults (full disks, clocks, restarts)."""
