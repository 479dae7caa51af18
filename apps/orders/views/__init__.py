"""The client pages: configurations (with the content picker) and orders."""
