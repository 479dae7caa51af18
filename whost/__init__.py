"""whost: the writer-host tool. It names the USB slots, stores the host's
configuration, configures its network and runs its workers (README: Set up a
writer host). Plain Python: no Django (DESIGN 2)."""
