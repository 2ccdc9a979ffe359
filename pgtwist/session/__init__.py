"""One client's session: the objects between its connection and its backend links.

``relay`` (the Protocol-facing glue and the drain loop) composes the others, each
given its collaborators when it is built:

- ``state``: the session's state (``Session``, ``Statement``, ``SqlPrepared``);
- ``ordering``: which server bytes the client may see now; the only sync counter;
- ``outbox``: what goes to the links and the client, in order;
- ``links``: the backend links the session holds (``LinkSet``);
- ``placement``: where a message goes (routing glue shared by requests and modes);
- ``requests``: the client's messages; ``replies``: the servers' answers;
- ``modes`` / ``txmode``: what the pool mode changes (``SessionMode``,
  ``TransactionMode``), chosen once when the service is built;
- ``startup``: from StartupMessage to the first ReadyForQuery.
"""

from .state import Session, SqlPrepared, Statement

__all__ = ["Session", "SqlPrepared", "Statement"]
