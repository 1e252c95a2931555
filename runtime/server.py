"""`logic serve`: the HTTP API, event delivery, the scheduler and webhooks in one process.

Start-up order matters: the worker zygote starts before the store is opened
(it must never hold the master key or a database handle). SIGTERM/SIGINT:
uvicorn stops accepting and finishes requests in flight; then the scheduler
stops, deliveries in flight finish (each bounded by its timeout), and claimed
deliveries not yet started are put back for the next start.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn

from runtime.http.app import create_app
from runtime.service import Service
from store.settings import Settings

log = logging.getLogger("logic.server")

STOP_SLACK_S = 5.0  # beyond the longest run, for deliveries in flight to commit at shutdown
# What one `logic serve` process does (`--role`): the HTTP API and console; event delivery
# and webhooks; cron ticks and housekeeping. Processes on one database share the work: a
# delivery is claimed under a lease, a tick by a compare-and-set (both across processes).
ROLES = frozenset({"api", "worker", "scheduler"})


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
    )
    # Threat: httpx logs every request URL at INFO, and a webhook URL carries rendered secrets.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class StreamsEndFirst(uvicorn.Server):
    """uvicorn that ends the live streams when asked to stop: it waits for every response
    to finish, and an event stream never would."""

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.streams.end_all()
        super().handle_exit(sig, frame)


def isolation_line(service: Service) -> str:
    """Which of the worker's layers are in effect, and why any is missing (issue 15)."""
    if service.pool is None:
        return "isolation: no workers (this process runs no function)"
    layers = getattr(service.pool, "layers", None)
    if layers is None:
        return "isolation: none (runs execute in this process)"
    return layers.summary()


def serve(settings: Settings, host: str, port: int, *, roles: frozenset[str] = ROLES) -> None:
    configure_logging()
    # The API runs test and manual runs, a worker delivers: both need the worker pool.
    service = Service.open(settings, runtime=bool(roles & {"api", "worker"}))
    dispatcher = service.dispatcher(alone="api" not in roles) if "worker" in roles else None
    scheduler = service.scheduler() if "scheduler" in roles else None
    server = StreamsEndFirst(
        uvicorn.Config(
            create_app(service), host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        ),
        service,
    )
    # uvicorn re-raises the SIGTERM it caught once it has drained; make that an orderly exit
    # so the finally below runs (stop the scheduler, finish deliveries, close the store).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if scheduler is not None:
            scheduler.start()
        if dispatcher is not None:
            dispatcher.start()
        print(f"roles: {', '.join(sorted(roles))}", flush=True)
        if "api" in roles:
            print(f"logic-runtime listening on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", flush=True)
            print(
                f"console: http://{host}:{port}/  (sign in with an API token: the one `logic init` printed)", flush=True
            )
        print(
            f"data: {settings.home}  database: {settings.database_shown}  master key: {service.store.key_source}",
            flush=True,
        )
        print(isolation_line(service), flush=True)
        log.info(
            "event=started roles=%s host=%s port=%d workers=%d delivery_threads=%d",
            ",".join(sorted(roles)),
            host,
            port,
            settings.workers,
            settings.delivery_threads,
        )
        if "api" in roles:
            server.run()
        else:
            signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
            signal.pause()  # until SIGTERM or SIGINT: the threads do the work
    finally:
        log.info("event=stopping")
        if scheduler is not None:
            scheduler.stop()
        if dispatcher is not None:
            dispatcher.stop(timeout=settings.run_timeout_s + STOP_SLACK_S)
        service.close()
        log.info("event=stopped")
