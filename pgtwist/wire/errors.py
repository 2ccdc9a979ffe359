"""SQLSTATE codes pgtwist raises itself, and the protocol-violation exception."""

from __future__ import annotations

PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
CONNECTION_EXCEPTION = "08000"
SQLCLIENT_UNABLE_TO_ESTABLISH = "08001"
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_AUTHORIZATION = "28000"
INVALID_PASSWORD = "28P01"
TOO_MANY_CONNECTIONS = "53300"
ADMIN_SHUTDOWN = "57P01"
QUERY_CANCELED = "57014"
INTERNAL_ERROR = "XX000"
INVALID_PARAMETER_VALUE = "22023"


class ProtocolViolation(Exception):
    """A peer sent bytes that break the v3 protocol; the connection must end.

    ``sqlstate`` defaults to 08P01; the message is safe to show to the client
    (it never contains message payloads, which may hold secrets).
    """

    def __init__(self, message: str, sqlstate: str = PROTOCOL_VIOLATION):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
