"""Every limit and default, in one pydantic settings object.

Override any field with an environment variable `LOGIC_<FIELD>` (e.g.
`LOGIC_RUN_TIMEOUT_S=5`) or the matching CLI flag. Defaults follow Particle.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# DESIGN's limit, also enforced where a manifest or webhook file is parsed (no settings there).
DECLARED_SECRETS_MAX = 50


def _default_home() -> Path:
    return Path(os.path.expanduser("~")) / ".logic"


# A `%` that starts no %XX escape, or the escape of a NUL: libpq's error for either quotes
# the token it sits in, which is the password when it sits in the password.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")
DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")


class Settings(BaseSettings):
    # Threat: pydantic quotes a refused value in its error, and LOGIC_DATABASE_URL holds the
    # database password (the CLI prints the error): errors name the setting, never its value.
    model_config = SettingsConfigDict(env_prefix="LOGIC_", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(default_factory=_default_home)
    master_key: SecretStr | None = None  # base64 of 32 bytes; else <home>/master.key
    # The next master key, during a rotation across nodes: each node opens the ring with
    # either, and `logic keys rotate --master` re-wraps the ring under this one.
    master_key_next: SecretStr | None = None
    user: str | None = None  # who the CLI acts as; default: the admin made by `logic init`

    # secrets
    secret_value_max_bytes: int = 64 * 1024
    secret_name_max_chars: int = 64
    # secret versions and bulk import (issue 13): the replaced values an update or restore
    # keeps (besides the current one; 0 keeps none), and what one `secrets import` may hold
    secret_versions_kept: int = Field(default=10, ge=0)
    secret_import_max_bytes: int = 512 * 1024  # the API's body limit (http_body_max_bytes) wraps it
    secret_import_max_count: int = 500

    # environment variables (plain text, per owner) and ledgers (JSON state, per owner)
    env_vars_max: int = 100
    env_bytes_max: int = 16 * 1024  # all of one owner's values together
    ledger_max_bytes: int = 16 * 1024  # one ledger's data as compact JSON
    ledger_versions_kept: int = 20
    ledger_calls_per_run_max: int = 1_000  # each is a round trip to the parent (and a write buffered)

    # functions and runs
    source_max_bytes: int = 256 * 1024
    ast_max_depth: int = 100
    triggers_max: int = 5
    run_timeout_s: float = 30.0
    worker_memory_mb: int = 256
    runs_kept: int = 100
    log_max_bytes: int = 64 * 1024
    result_max_bytes: int = 256 * 1024
    events_per_run_max: int = 100
    secret_reads_per_run_max: int = 10_000  # each read is an audit row
    # What the secrets one run or webhook reads may cost the server to mask (threat: a
    # tenant declaring many large secrets to exhaust the server's memory and CPU):
    # their distinct values' total size, and the redactor they need (see runtime/redactor.py).
    secret_bytes_per_run_max: int = 256 * 1024
    masking_bytes_per_run_max: int = 16 * 1024 * 1024
    redactor_cache_mb: int = 64  # patterns and redactors shared between runs
    chain_depth_max: int = 8
    workers: int = Field(default_factory=lambda: max(2, 2 * (os.cpu_count() or 1)))
    worker_max_runs: int = 10_000
    worker_open_files: int = 16
    # How long the parent and a worker poll for each other's answer before they sleep,
    # with at most 2 x cores runs in flight: waking a sleeping process costs tens of
    # microseconds (more on a VM). Up to 10,000; 0 turns it off.
    worker_spin_us: int = 300
    # The worker jail (README "Security model: the worker's layers"): the seccomp allowlist
    # ("log" allows and has the kernel log what "on" refuses: how the list is maintained),
    # and each worker's cgroup limits where a hierarchy is writable (as root): memory
    # (0: worker_memory_mb + 32 MiB for the kernel's share), tasks, CPU in % of one core.
    worker_seccomp: Literal["on", "log", "off"] = "on"
    worker_cgroups: bool = True
    worker_cgroup_memory_mb: int = Field(default=0, ge=0)
    worker_pids_max: int = Field(default=8, ge=1)
    worker_cpu_percent: int = Field(default=100, ge=1, le=100_000)

    # events and deliveries
    event_name_max_chars: int = 64
    event_data_max_bytes: int = 100 * 1024
    queue_max_pending: int = 10_000
    # Per owner (threat: one tenant's flood starving the others): deliveries waiting or
    # running, and runs in flight at once (0: half the workers); see owner_runs_max.
    queue_max_pending_per_owner: int = 1_000
    runs_in_flight_per_owner: int = 0
    delivery_threads: int = Field(default_factory=lambda: max(2, 2 * (os.cpu_count() or 1)))
    dispatcher_poll_s: float = 0.5
    # The group commit (runtime/events/publish_writer.py): publishes waiting for the writer
    # before 503 at once, and how many one transaction takes.
    publish_queue_max: int = Field(default=1_000, ge=1)
    publish_batch_max: int = Field(default=256, ge=1)
    delivery_max_attempts: int = 3
    event_retention_days: float = 7.0  # finished events and deliveries are forgotten after this
    audit_retention_days: float = 365.0  # secret access records
    change_audit_retention_days: float = 365.0  # change audit rows (pruned behind a checkpoint)

    # integrations
    webhook_timeout_s: float = 10.0
    webhook_retries: int = 2
    webhook_allow_private: bool = False  # loopback, private, link-local destinations (SSRF)
    integration_logs_kept: int = 100
    # what one webhook request's templates (or its response template) may render in all:
    # sections over event data multiply it (threat: a loop in a loop over a big array)
    webhook_render_max_chars: int = 1_024_000

    # storage: SQLite at <home>/logic.db unless a PostgreSQL URL is given (README "Running on
    # several machines"); several nodes on one PostgreSQL each get a name for their claims
    busy_timeout_ms: int = 10_000
    database_url: SecretStr | None = None  # postgresql://user:password@host:port/dbname
    node_id: str | None = None  # default: hostname:pid
    pg_pool_max: int = Field(default=0, ge=0)  # connections per node (0: delivery threads + 16)
    delivery_lease_s: float = Field(default=30.0, gt=0)  # a claim's lease, renewed by a heartbeat while it runs

    # server
    # Failed Bearer tokens per client address (threat: guessing tokens through the API):
    # past the limit within the window, 429 with Retry-After until it passes.
    auth_failures_max: int = 10
    auth_failure_window_s: float = 60.0
    # Every 429 the HTTP API answers is sent after this hold (threat: a client that ignores
    # Retry-After and asks again at once spends the server's CPU on refusals).
    refusal_hold_ms: int = Field(default=200, ge=0, le=10_000)
    # console: a signed-in browser session ends after this long without a request
    console_session_idle_s: float = 8 * 3600.0
    # live streams (SSE): open streams per owner; events held for a reader that falls behind
    # (past it the reader is dropped, publishing never waits); a keep-alive comment this often
    streams_per_owner: int = 10
    stream_buffer_events: int = 1000
    stream_keepalive_s: float = 9.0  # particle-cli reconnects after 13 s of silence
    host: str = "127.0.0.1"
    port: int = 8080
    http_body_max_bytes: int = 1024 * 1024

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        """A postgresql:// URL that libpq can parse without quoting it back: its errors for a
        bad escape or host quote the password or the whole URL (threat: the password in a
        terminal or a log). Each refusal says how to fix the URL, never what it holds."""
        if value is None or not value.get_secret_value():
            return None  # LOGIC_DATABASE_URL= (empty): SQLite, as when it is unset
        url = value.get_secret_value()
        if not url.startswith(DATABASE_URL_SCHEMES):
            raise ValueError("must be a URL: postgresql://user:password@host:port/dbname")
        if _BAD_ESCAPE.search(url):
            raise ValueError("a % must start an escape (%XX, not %00): write a % in the password as %25")
        try:
            urlsplit(url)
        except ValueError:
            raise ValueError("the host is not valid: an IPv6 address goes in brackets, [::1]") from None
        return value

    @property
    def owner_runs_max(self) -> int:
        """Runs (deliveries, test and manual runs) one owner may have in flight at once."""
        if self.runs_in_flight_per_owner > 0:
            return self.runs_in_flight_per_owner
        return max(1, int(self.workers) // 2)

    @property
    def db_path(self) -> Path:
        return self.home / "logic.db"

    @property
    def database_shown(self) -> str:
        """Where the store lives, fit to print: the SQLite file, or the PostgreSQL URL
        without its user and password."""
        if self.database_url is None:
            return str(self.db_path)
        url = urlsplit(self.database_url.get_secret_value())
        hosts = url.netloc.rpartition("@")[2]  # host:port, or libpq's host1:port1,host2:port2
        return urlunsplit((url.scheme, hosts, url.path, "", ""))

    @property
    def key_path(self) -> Path:
        return self.home / "master.key"
