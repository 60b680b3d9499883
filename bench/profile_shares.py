"""Where a serving worker's time goes: a py-spy raw profile, summed into the request path's parts.

    recsys loadtest --artifacts bench-output/loadtest/build-20k --workers 1 \\
        --users-rate 300 --duration 60s --out bench-output/loadtest/profile &
    # once locust runs (with 1 worker, the worker is the `recsys serve` process itself):
    py-spy record --pid "$(pgrep -n -f 'cli.main serve')" --threads -r 100 -d 20 -f raw \\
        -o bench-output/loadtest/profile.txt
    python bench/profile_shares.py bench-output/loadtest/profile.txt [another.txt ...]

py-spy leaves out threads it sees idle, but a pool thread blocked on its work queue (or on the
GIL, which looks the same from outside) is often sampled anyway: those samples are one row,
"waiting", as a share of all samples, and every other row is a share of the working samples,
so that profiles taken under different load or contention stay comparable. A stack counts
once, for the first of ``RULES`` that matches it.
"""

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path


def _anywhere(*needles: str) -> Callable[[list[str]], bool]:
    return lambda frames: any(n in f for f in frames for n in needles)


def _innermost(*prefixes: str) -> Callable[[list[str]], bool]:
    """The innermost Python frame: when it is a loop's own frame, the time is in C below it."""
    return lambda frames: frames[-1].startswith(prefixes)


WAITING = "waiting for work or the GIL (pool threads in `_worker`, `Queue.get`)"
# First match wins: a LightGBM call is "model" even though it runs inside a rank thread.
RULES: list[tuple[str, Callable[[list[str]], bool]]] = [
    (WAITING, _innermost("_worker (", "Queue.get (", "Condition.wait (")),
    (
        "FastAPI thread-pool hand-offs (`def` dependencies)",
        _anywhere("AnyIO worker thread", "run_in_threadpool"),
    ),
    ("LightGBM predict", _anywhere("Booster.predict")),
    ("features", _anywhere("build_features")),
    ("Redis client", _anywhere("read_user_async", "append_event_async", "redis/asyncio/")),
    (
        "our request code (decode, fallbacks, response body)",
        lambda f: ("(recsys/" in f[-1] or "(api/" in f[-1]) and "(api/middleware.py" not in f[-1],
    ),
    ("event loop in C (uvloop, httptools, sockets)", _innermost("Runner.run (")),
    (
        "HTTP framework in Python (Starlette/FastAPI, our middleware)",
        _anywhere("routing.py", "applications.py", "middleware", "httptools_impl"),
    ),
]
OTHER = "other"


def part_of(stack: str) -> str:
    frames = stack.split(";")
    for part, matches in RULES:
        if matches(frames):
            return part
    return OTHER


def shares(lines: Iterable[str]) -> dict[str, float]:
    """Per part: ``WAITING`` as a share of all samples, the others of the working samples.
    Reads py-spy's raw format (``frame;frame;... count``)."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if stack and n.isdigit():
            counts[part_of(stack)] += int(n)
    total = sum(counts.values())
    working = total - counts[WAITING]
    if not working:
        raise ValueError("no working samples: is this a py-spy profile recorded with -f raw?")
    parts = [p for p, _ in RULES if p != WAITING] + [OTHER]
    return {WAITING: counts[WAITING] / total} | {p: counts[p] / working for p in parts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy -f raw outputs")
    args = parser.parse_args(argv)
    columns = [shares(p.read_text().splitlines()) for p in args.profiles]
    print("| where | " + " | ".join(p.stem for p in args.profiles) + " |")
    print("|---|" + "---:|" * len(columns))
    for part in columns[0]:
        print(f"| {part} | " + " | ".join(f"{c[part]:.1%}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
