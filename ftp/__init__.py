"""The warehouse: an FTP server (pyftpdlib) that receives images from creators and
serves them to downloaders, and an HTTP(S) server for download orders' links
(``web``), a thin client of the scheduler's API (DESIGN 1, 6).

The protocol adapters (``server``, ``web``) are thin; the rules live in plain
modules tested on their own: ``auth`` (tokens and links), ``paths`` and
``policy`` (who may touch what), ``uploads`` (declared sizes, resume, reserve,
.part files), ``ranges`` (HTTP byte ranges), ``hashing``, ``storage``,
``accounts`` and ``reporter``. No Django here.
"""
