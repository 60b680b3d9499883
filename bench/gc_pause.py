"""Why a serving worker calls ``gc.freeze()`` after loading a build: the pause of a full
collection in a process that holds what a worker holds (the app, its imports, a loaded build).

    python bench/gc_pause.py ARTIFACTS_DIR [BUILD_VERSION]

A full (generation 2) collection stops the event loop for as long as it walks every tracked
object. ``gc.freeze()`` moves them to a permanent generation that collections skip.
"""

import argparse
import gc
import statistics
import time
from pathlib import Path

from api.app import create_app
from recsys.config import Settings
from recsys.serving import ServingModel


def full_collection_ms(repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", type=Path)
    p.add_argument("version", nargs="?", help="default: the newest build in ARTIFACTS_DIR")
    args = p.parse_args()
    version = args.version or max(
        d.name for d in args.artifacts.iterdir() if (d / "manifest.json").exists()
    )
    model = ServingModel.load(args.artifacts, version)
    # the app is only built (its lifespan does not run), so no Redis is needed
    app = create_app(Settings(redis_url="redis://127.0.0.1:1"), args.artifacts)
    gc.collect()
    print(f"build {version}: {len(gc.get_objects()):,} tracked objects")
    print(f"full collection: {full_collection_ms():.1f} ms (median of 7)")
    gc.freeze()
    print(f"after gc.freeze(): {full_collection_ms() * 1000:.1f} us")
    del model, app


if __name__ == "__main__":
    main()
