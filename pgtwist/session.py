"""Per-client session state, kept apart from the I/O that changes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .wire import codes


@dataclass
class Session:
    """What pgtwist knows about one client's session.

    ``pid``/``secret`` are pgtwist's own BackendKeyData for the client (not a
    backend's): a CancelRequest carrying them is mapped to the backend links
    that serve this session.
    """

    pid: int
    secret: int
    client_address: str = ""
    user: str = ""
    database: str = ""
    startup_params: dict[str, str] = field(default_factory=dict)
    # Server-reported parameters (ParameterStatus), latest value wins.
    parameters: dict[str, str] = field(default_factory=dict)
    txn_status: int = codes.TXN_IDLE

    @property
    def application_name(self) -> str:
        return self.startup_params.get("application_name", "")

    @property
    def in_transaction(self) -> bool:
        return self.txn_status != codes.TXN_IDLE
