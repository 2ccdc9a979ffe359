"""What runs on a backend link before another client may have it: ``reset_query_list``.

ABORT runs only on a link inside a transaction; each statement is its own Query message.
"""

from __future__ import annotations

from ..wire import codes
from ..wire import messages as m

IDLE_STATUS = (codes.TXN_IDLE, "I", b"I")


class ResetQueries:
    """``reset_query_list`` (blank entries dropped), ready for a link in either state."""

    def __init__(self, reset_query_list: tuple[str, ...]):
        statements = tuple(q.strip() for q in reset_query_list if q.strip())
        self.statements = statements
        self._idle = tuple(q for q in statements if q.upper() != "ABORT")
        self._in_txn = statements
        self._frames = {False: b"".join(m.query(q) for q in self._in_txn),
                        True: b"".join(m.query(q) for q in self._idle)}

    def statements_for(self, txn_status) -> tuple[str, ...]:
        """``reset_query_list`` for a link in ``txn_status``: ABORT only inside a transaction."""
        return self._idle if txn_status in IDLE_STATUS else self._in_txn

    def frames_for(self, txn_status) -> bytes:
        """The reset as framed Query messages, ONE PER STATEMENT, ready to write.

        Not one joined Query: PostgreSQL runs a multi-statement Query in an implicit
        transaction block, where DISCARD ALL fails ("cannot run inside a transaction
        block").  The relay awaits ``len(statements_for(txn_status))`` ReadyForQuery.
        """
        return self._frames[txn_status in IDLE_STATUS]
