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
    layers = getattr(service.pool, "layers", None)
    if layers is None:
        return "isolation: none (runs execute in this process)"
    return layers.summary()


def serve(settings: Settings, host: str, port: int) -> None:
    configure_logging()
    service = Service.open(settings, runtime=True)
    dispatcher = service.dispatcher()
    scheduler = service.scheduler()
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
        scheduler.start()
        dispatcher.start()
        print(f"logic-runtime listening on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", flush=True)
        print(f"console: http://{host}:{port}/  (sign in with an API token: the one `logic init` printed)", flush=True)
        print(
            f"data: {settings.home}  database: {settings.db_path}  master key: {service.store.key_source}", flush=True
        )
        print(isolation_line(service), flush=True)
        log.info(
            "event=started host=%s port=%d workers=%d delivery_threads=%d",
            host,
            port,
            settings.workers,
            settings.delivery_threads,
        )
        server.run()
    finally:
        log.info("event=stopping")
        scheduler.stop()
        dispatcher.stop(timeout=settings.run_timeout_s + STOP_SLACK_S)
        service.close()
        log.info("event=stopped")
