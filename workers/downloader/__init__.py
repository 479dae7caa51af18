"""Downloader worker: brings verified images from the warehouse to a writer host
(see DESIGN.md section 6)."""
