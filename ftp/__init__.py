"""The warehouse: an FTP server (pyftpdlib) that receives images from creators and
serves them to downloaders, a thin client of the scheduler's API (DESIGN 1, 6).

The protocol adapter (``server``) is thin; the rules live in plain modules tested
on their own: ``auth`` (tokens), ``paths`` and ``policy`` (who may touch what),
``uploads`` (declared sizes, resume, reserve, .part files), ``hashing``,
``storage``, ``accounts`` and ``reporter``. No Django here.
"""
