"""Client authentication: who may connect (hba: rules and matching, hba_parse: the
pool_hba.conf grammar, addresses: IP addresses and this host's own), with which secrets
(passwd), and one session's exchange with its client and the secret its backend logins use
(session)."""
