"""PostgreSQL v3 message type codes.

Frontend (client -> server) and backend (server -> client) codes live in separate
tables on purpose: the same byte means different things in each direction
(``E`` is Execute one way and ErrorResponse the other).
"""

from __future__ import annotations

# -- frontend (sent by clients) ------------------------------------------------
BIND = ord("B")
CLOSE = ord("C")
COPY_DATA = ord("d")
COPY_DONE = ord("c")
COPY_FAIL = ord("f")
DESCRIBE = ord("D")
EXECUTE = ord("E")
FLUSH = ord("H")
FUNCTION_CALL = ord("F")
PARSE = ord("P")
PASSWORD = ord("p")  # also SASLInitialResponse, SASLResponse, GSSResponse
QUERY = ord("Q")
SYNC = ord("S")
TERMINATE = ord("X")

FRONTEND_NAMES: dict[int, str] = {
    BIND: "Bind",
    CLOSE: "Close",
    COPY_DATA: "CopyData",
    COPY_DONE: "CopyDone",
    COPY_FAIL: "CopyFail",
    DESCRIBE: "Describe",
    EXECUTE: "Execute",
    FLUSH: "Flush",
    FUNCTION_CALL: "FunctionCall",
    PARSE: "Parse",
    PASSWORD: "PasswordMessage",
    QUERY: "Query",
    SYNC: "Sync",
    TERMINATE: "Terminate",
}

# Messages that end a client batch: the server answers each with ReadyForQuery.
SYNC_POINTS = frozenset((QUERY, SYNC, FUNCTION_CALL))

# -- backend (sent by servers) -------------------------------------------------
AUTHENTICATION = ord("R")
BACKEND_KEY_DATA = ord("K")
BIND_COMPLETE = ord("2")
CLOSE_COMPLETE = ord("3")
COMMAND_COMPLETE = ord("C")
COPY_BOTH_RESPONSE = ord("W")
COPY_IN_RESPONSE = ord("G")
COPY_OUT_RESPONSE = ord("H")
DATA_ROW = ord("D")
EMPTY_QUERY_RESPONSE = ord("I")
ERROR_RESPONSE = ord("E")
FUNCTION_CALL_RESPONSE = ord("V")
NEGOTIATE_PROTOCOL_VERSION = ord("v")
NO_DATA = ord("n")
NOTICE_RESPONSE = ord("N")
NOTIFICATION_RESPONSE = ord("A")
PARAMETER_DESCRIPTION = ord("t")
PARAMETER_STATUS = ord("S")
PARSE_COMPLETE = ord("1")
PORTAL_SUSPENDED = ord("s")
READY_FOR_QUERY = ord("Z")
ROW_DESCRIPTION = ord("T")
# CopyData ('d') and CopyDone ('c') are the same byte in both directions.

BACKEND_NAMES: dict[int, str] = {
    AUTHENTICATION: "Authentication",
    BACKEND_KEY_DATA: "BackendKeyData",
    BIND_COMPLETE: "BindComplete",
    CLOSE_COMPLETE: "CloseComplete",
    COMMAND_COMPLETE: "CommandComplete",
    COPY_BOTH_RESPONSE: "CopyBothResponse",
    COPY_DATA: "CopyData",
    COPY_DONE: "CopyDone",
    COPY_IN_RESPONSE: "CopyInResponse",
    COPY_OUT_RESPONSE: "CopyOutResponse",
    DATA_ROW: "DataRow",
    EMPTY_QUERY_RESPONSE: "EmptyQueryResponse",
    ERROR_RESPONSE: "ErrorResponse",
    FUNCTION_CALL_RESPONSE: "FunctionCallResponse",
    NEGOTIATE_PROTOCOL_VERSION: "NegotiateProtocolVersion",
    NO_DATA: "NoData",
    NOTICE_RESPONSE: "NoticeResponse",
    NOTIFICATION_RESPONSE: "NotificationResponse",
    PARAMETER_DESCRIPTION: "ParameterDescription",
    PARAMETER_STATUS: "ParameterStatus",
    PARSE_COMPLETE: "ParseComplete",
    PORTAL_SUSPENDED: "PortalSuspended",
    READY_FOR_QUERY: "ReadyForQuery",
    ROW_DESCRIPTION: "RowDescription",
}

# -- untyped startup-phase packets (the "code" is a 32-bit request number) -----
PROTOCOL_3_0 = 196608  # 3 << 16
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

# -- Authentication request subtypes ----------------------------------------------
AUTH_OK = 0
AUTH_KERBEROS_V5 = 2
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_GSS = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI = 9
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

# ReadyForQuery transaction status bytes.
TXN_IDLE = ord("I")
TXN_BLOCK = ord("T")
TXN_FAILED = ord("E")
