"""Errors services raise; the API maps them to status codes (apps.common.api)."""


class Conflict(Exception):
    """The request was valid but the state moved on: HTTP 409.

    ``code`` is a stable English identifier workers can act on (``lease_lost``).
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
