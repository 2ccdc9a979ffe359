"""Client authentication: who may connect (hba), with which secrets (passwd), and one
session's exchange with its client and the secret its backend logins use (session)."""
