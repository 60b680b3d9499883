"""``recsys serve --artifacts ART``: the API on uvicorn, with our own Redis when none is given.

With ``serve.workers > 1`` (``RECSYS_SERVE__WORKERS``) uvicorn runs that many processes, each
building its app through ``api.app:app_from_env``. This parent process starts the local Redis
once and hands its URL and the artifacts path down through the environment, and sets up the
shared Prometheus directory so ``/metrics`` sums all workers.
"""

import contextlib
import ipaddress
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from recsys.artifacts import REDIS_DIR
from recsys.config import ServeConfig, Settings
from recsys.errors import ArtifactError
from recsys.store.server import redis_url_or_local

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when it is imported

# One OpenMP thread per process: LightGBM predicts with num_threads=1 on threads of our own and
# the API scales with processes; per-call OpenMP teams would oversubscribe the cores (LightGBM
# #6464). Set before LightGBM loads its runtime, i.e. before importing api.app. (BLAS is held to
# one thread for every command in ``recsys/__init__.py``.)
_OMP_THREADS = "1"


def exposure_warning(cfg: ServeConfig) -> str | None:
    """What is wrong with listening on ``cfg.host`` without an API key, if anything."""
    if cfg.api_key is not None:
        return None
    try:
        loopback = ipaddress.ip_address(cfg.host).is_loopback
    except ValueError:  # a host name
        loopback = cfg.host == "localhost"
    if loopback:
        return None
    return (
        f"listening on {cfg.host} without an API key: anyone who can reach port {cfg.port} can "
        "read what users watched (through their recommendations) and write events for them. "
        "Set RECSYS_SERVE__API_KEY, or listen on 127.0.0.1 behind a proxy that authenticates."
    )


def serve(artifacts: Path, settings: Settings) -> None:
    warning = exposure_warning(settings.serve)
    if warning:
        log.warning("%s", warning)
    if not artifacts.is_dir():
        raise ArtifactError(f"{artifacts}: no such artifacts directory; run `recsys build` first")
    report = settings.ui.eval_report
    if report is not None and not report.exists():
        raise ArtifactError(f"--eval-report {report}: no such file or folder; run `recsys eval`")
    os.environ.setdefault("OMP_NUM_THREADS", _OMP_THREADS)
    cfg = settings.serve
    with redis_url_or_local(
        settings.redis_url, artifacts / REDIS_DIR, settings.redis_server
    ) as url:
        if cfg.workers == 1:
            from api.app import create_app

            app = create_app(settings.model_copy(update={"redis_url": url}), artifacts)
            uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
            return
        os.environ["RECSYS_REDIS_URL"] = url
        os.environ["RECSYS_SERVE__ARTIFACTS"] = str(artifacts.resolve())
        if report is not None:
            os.environ["RECSYS_UI__EVAL_REPORT"] = str(report.resolve())
        with _shared_metrics_dir():
            uvicorn.run(
                "api.app:app_from_env",
                factory=True,
                workers=cfg.workers,
                host=cfg.host,
                port=cfg.port,
                log_level="warning",
                access_log=False,
            )


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR for the workers: the one given (emptied of a previous run's
    files, as prometheus-client requires), else a temporary one removed at the end."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="recsys-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(path, ignore_errors=True)
