"""Backend links shared between sessions: the pool of logged-in links (pool), the checkout
glue that hands them to sessions and takes them back reset (checkout), and the sans-IO
bookkeeping transaction pooling needs: server-side statement names, per-link caches and
pins (statements)."""
