"""Helpers shared by the API tests (this module holds no tests): a small build through a real
Redis, an app around it, a live uvicorn server, a free TCP port."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from recsys.config import ServeConfig, Settings
from recsys.data.dataset import Dataset
from recsys.data.synth import generate_synthetic
from recsys.pipeline import BuildResult, run_build
from recsys.store.connect import client_for
from recsys.store.keys import Keys
from tests.conftest import small_settings

# Fast enough for a test to flip builds within a second; production polls every 2 s.
FAST_POLL_S = 0.05


def small_dataset(seed: int = 5) -> Dataset:
    return generate_synthetic(n_users=300, n_items=120, seed=seed, events_per_user=20)


@dataclass(frozen=True)
class Built:
    """A published build: the settings that made it (key prefix included) and where it lives."""

    settings: Settings
    result: BuildResult
    artifacts: Path
    dataset: Dataset

    @property
    def version(self) -> str:
        return self.result.version

    @property
    def keys(self) -> Keys:
        return Keys(self.settings.key_prefix)

    def known_users(self, n: int) -> list[str]:
        return [str(u) for u in self.result.users.keys()[:n]]

    def rebuild(self, dataset: Dataset | None = None) -> BuildResult:
        """Another build under the same prefix and artifacts: what a nightly job does."""
        with client_for(self.settings.redis_url or "") as client:
            return run_build(dataset or self.dataset, self.artifacts, client, self.settings)

    def with_serve(self, **serve: object) -> Settings:
        """The same build's settings with some ServeConfig fields changed (and validated)."""
        cfg = ServeConfig.model_validate({**self.settings.serve.model_dump(), **serve})
        return self.settings.model_copy(update={"serve": cfg})


def build_small(redis_url: str, artifacts: Path, **overrides: object) -> Built:
    overrides.setdefault("serve", {"build_poll_s": FAST_POLL_S})
    settings = small_settings(redis_url, **overrides)
    dataset = small_dataset()
    with client_for(redis_url) as client:
        result = run_build(dataset, artifacts, client, settings)
    return Built(settings, result, artifacts, dataset)


@contextmanager
def api_client(
    built: Built, settings: Settings | None = None, *, raise_server_exceptions: bool = True
) -> Iterator[TestClient]:
    app = create_app(settings or built.settings, built.artifacts)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn server in a thread (real HTTP parsing); yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
