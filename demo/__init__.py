"""Demo and test kits, kept out of the production packages (DESIGN 8): the
chain of processes on one machine (``chain``), its content (``catalog``: ZIM
files and a Range-capable HTTP server), small real inputs (``inputs``: a base
image), and cards (``cards``: blank card files, loop-device and file slots).

``scripts/demo.py`` is its command line; the tests and ``bench/`` import it.
Nothing under workers/ or ftp/ imports it.
"""
