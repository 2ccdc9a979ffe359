"""Pool modes: what session pooling and transaction pooling do differently.

The service picks one class when it is built (``mode_for``); each session gets an
instance of it, built with the session's objects.  Client-message handling
(pgtwist.session.requests) runs one path for both modes and asks its mode at the
points where they differ:

- ``before_route(info, sql)``: answer a statement from the session's own names (GO: no);
- ``before_parse``, ``parse_decision``, ``send_parse``, ``bind``, ``describe_statement``,
  ``close_statement``: how client statement names map to server statements;
- ``unknown_statement``, ``placed``, ``deallocate_link``, ``batch_starts``, ``holds``,
  ``add_statement``, ``placed_now``: the mode's steps in placing a statement for a Bind
  or Describe (Requests._statement_link);
- ``prepared_on(link, prepared)``: a SQL PREPAREd statement exists where EXECUTE goes;
- ``before_query`` / ``after_statement``: bookkeeping around a statement sent to a link;
- ``parameter_reported``: a setting the primary reported changed;
- ``release_idle``, ``keeps_link``, ``release_unused``: when links go back to the pool;
- ``server_error(link, body)``: an ErrorResponse a server sent;
- ``key_pid(primary_link)``: the pid the client is told is its backend's.

``SessionMode`` (pgtwist.session.modes) keeps every link for the whole session
(Pgpool-II's model); ``TransactionMode`` (pgtwist.session.txmode) hands links back to
the pool between transactions.
"""

from __future__ import annotations


class PoolMode:
    """What both pool modes are built with: the session's objects, and the service's."""

    def __init__(self, session, outbox, links, ordering, placement, router, cluster,
                 pooling, backlog) -> None:
        self.session = session
        self.out = outbox
        self.links = links
        self.ordering = ordering
        self.place = placement
        self.router = router
        self.cluster = cluster
        self.pooling = pooling
        self.backlog = backlog   # the client frames received and not yet routed

    def server_error(self, link, body: bytes) -> None:
        """An ErrorResponse from ``link``'s server (its body); what it means to the mode."""

    def after_bind(self, stmt, link) -> None:
        """``after_statement`` for a Bind of ``stmt``."""
        self.after_statement(stmt.info, stmt.sql, link)

    # -- placing a statement for a Bind / Describe 'S' again ---------------------------------
    def placed(self, stmt):
        """The link ``stmt`` went to last time, while the session state, the cluster and
        the link are the same (and the link holds the statement, and the mode can take the
        link now: ``_take_placed``): no re-routing per Bind/Describe."""
        placed = stmt.placed
        if placed is not None:
            s = self.session
            key, link, sticky = placed
            if (sticky is s.sticky and key == (s.route_status, s.lb_node, self.cluster.version)
                    and not link.closed and self.holds(link, stmt)
                    and not self._must_judge_freshness(link) and self._take_placed(link)):
                return link
        return None

    def _must_judge_freshness(self, link) -> bool:
        """read_consistency: a read on a standby while this session's reads must see a
        write is routed afresh (the standby may not have replayed it); with nothing to
        see, where it went last time still holds."""
        router = self.router
        return (router.lsn_on and link.node_id != self.session.primary_id
                and router.consistency.fresh_key(self.session) is not None)

    def placed_now(self, stmt, link, prepared) -> None:
        s = self.session
        info = stmt.info
        if self._must_judge_freshness(link):
            return  # read_consistency: judged at every Bind while a write must be seen
        if (self.router.cacheable and prepared is None and info.execute_name is None
                and info.deallocate_name is None and info.command not in ("FETCH", "MOVE", "CLOSE")):
            stmt.placed = ((s.route_status, s.lb_node, self.cluster.version), link, s.sticky)
