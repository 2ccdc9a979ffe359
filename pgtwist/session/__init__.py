"""One client's session: the objects between its connection and its backend links.

``relay`` (the Protocol-facing glue and the drain loop) builds the others, each
given its collaborators when it is built:

- ``state``: the session's state (``Session``, ``Statement``, ``SqlPrepared``);
- ``ordering``: which server bytes the client may see now; the only sync counter;
- ``outbox``: what goes to the links and the client, in order;
- ``links``: the backend links the session holds (``LinkSet``), and flow control;
- ``placement``: where a message goes (routing glue shared by requests and modes);
- ``requests``: the client's messages (``copyin``: COPY FROM STDIN's); ``replies``: the
  servers' answers;
- ``poolmode`` / ``modes`` / ``txmode``: what the pool mode changes (the hooks of
  ``PoolMode``; ``SessionMode``, ``TransactionMode``), chosen once when the service is built;
- ``startup``: from StartupMessage to the first ReadyForQuery;
- ``flow``: the producer/consumer valves between the client and its links.

One statement's walk, a file per step:

1. protocols/frontend.py: ``dataReceived`` hands the bytes to ``Relay.client_data``;
2. session/relay.py: the frontend machine frames them, ``_drain`` calls the handler
   for each frame;
3. session/requests.py: ``on_query`` classifies (router.py) and asks the mode
   (session/modes.py, txmode.py) whether it answers the statement itself;
4. session/placement.py: the routing decision (router.py, catalog facts) becomes a
   link, opened or taken from the pool by session/links.py if need be;
5. session/outbox.py: ``forward`` queues the client's frame for that link and
   registers its sync point with session/ordering.py; the drain loop ends with
   ``Outbox.flush``: one write per link (protocols/backend.py);
6. protocols/backend.py: the server's bytes are scanned (wire/framing.py) and handed
   to the link's owner, ``Replies.backend_items`` (session/replies.py);
7. session/ordering.py: ``receive`` says which bytes the client may have now; they are
   written in one call; the watched frames update conn/server.py's ServerState and
   the session's state, and an idle link may go back to the pool (the mode decides).
"""

from .state import Session, SqlPrepared, Statement

__all__ = ["Session", "SqlPrepared", "Statement"]
