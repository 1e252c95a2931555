"""One run, parent side: from a trigger to a stored, redacted run record.

    engine          Engine.run: limits, a worker, the secrets broker, redaction, one commit
    secrets_broker  SecretsBroker: `secrets.NAME` for one run (allowlist, decrypt, audit)
    redactor        Redactor: masks every read value in every promised encoding
    owner_gate      OwnerGate: a per-owner cap on runs started on request

The worker processes are `runtime.workers`; the code they run, `runtime.sandbox`.
"""
