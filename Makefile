# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
# Each creates .venv and installs the project into it on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast check contract format bench bench-scale report loadtest chaos screenshots peers clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The tests also start Ray nodes (the `scale` extra); `make demo` needs only the base install.
SCALE_STAMP := $(VENV)/.scale-stamp
$(SCALE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,scale]'
	@touch $(SCALE_STAMP)

demo: $(STAMP)
	$(BIN)/recsys demo --out demo-output

# Test files run in 2 processes (pytest-xdist): most tests wait on servers, not on the CPU,
# and a file's module fixtures (a build) stay in one process.
test: $(SCALE_STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(SCALE_STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m 'not slow'

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The API's OpenAPI contract: documented fields, and schemathesis against a live server on a
# real Redis (also part of `make test`).
contract: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_api_contract.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Offline scale (3 sizes, the large one ~30 min), HNSW vs exact, ranking cost; then the doc.
bench: $(STAMP)
	$(BIN)/python bench/offline_scale.py --size small
	$(BIN)/python bench/offline_scale.py --size medium
	$(BIN)/python bench/hnsw_recall.py bench-output/data/synth-medium --out bench-output/hnsw_020k.json
	$(BIN)/python bench/offline_scale.py --size large
	$(BIN)/python bench/hnsw_recall.py bench-output/data/synth-large --out bench-output/hnsw_100k.json
	$(BIN)/recsys data synth bench-output/data/synth-default
	$(BIN)/python bench/ranking_cost.py bench-output/data/synth-default
	$(BIN)/python bench/render.py

# Beyond one machine (docs/SCALE.md): builds of 20k, 50k and 1M users with the per-user stage
# in one process, and of 1M users on 2 Ray workers; ALS fit time and memory against events; what
# sampling the ranker's training requests costs; the load test on 2 API replicas over a Redis
# Cluster; then the "Sharded build" section of docs/BENCHMARKS.md and the plan's tables. About
# 1 hour here (the 1M-user synthetic log takes ~25 min more the first time). Short runs (repeat
# 3 x 30 s for the load test), as the published figures were taken on a shared machine; hence
# also OMP_WAIT_POLICY=PASSIVE.
bench-scale: $(SCALE_STAMP)
	for w in 2 0; do OMP_WAIT_POLICY=PASSIVE \
		$(BIN)/python bench/sharded_build.py --size large --workers $$w || exit 1; done
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/cluster_loadtest.py -- --users-rate 150 \
		--duration 30s --repeat 3 --max-p99-ms 30
	for size in small m50; do OMP_WAIT_POLICY=PASSIVE \
		$(BIN)/python bench/sharded_build.py --size $$size --workers 0 || exit 1; done
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/als_scale.py --events 5e6,10e6,20e6
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/ranker_sampling.py bench-output/data/synth-medium \
		--groups 2500,5000,10000,20000 --test 5000 --pool 40000
	$(BIN)/python bench/render.py --only sharded
	$(BIN)/python bench/scale_plan.py

# Evaluation reports in docs/reports/: ml-latest-small (from ../shared/data, converted into a temp
# dir) and the default synthetic log, leave-last-out and walk-forward; ~2 minutes.
report: $(STAMP)
	$(BIN)/python -m eval.make_report

# Load test (bench/LOADTEST.md): a 20k-user synthetic build (made once, then reused), the API
# with 2 workers, locust at 150 req/s for 60 s (80% known users, 10% unknown, 10% events);
# exits non-zero when p99 > 100 ms or a request fails. Waits for an idle machine first.
LOADTEST_ARGS ?= --users-rate 150 --duration 60s
loadtest: $(STAMP)
	$(BIN)/recsys loadtest --artifacts bench-output/loadtest/build-20k --workers 2 --wait-idle \
		--out bench-output/loadtest/make $(LOADTEST_ARGS)

# Chaos and soak (docs/RELIABILITY.md): 10 minutes of mixed traffic while a build is killed
# mid-write, Redis is restarted twice, a build is flipped in and an API worker is killed;
# exit code 0 when no acknowledged event was lost, no answer was a 5xx and memory levelled off.
# A 2-minute version is part of `make test` (tests/test_chaos.py).
CHAOS_ARGS ?= --duration 600
chaos: $(STAMP)
	$(BIN)/python -m loadtest.chaos --out bench-output/chaos $(CHAOS_ARGS)

# Screenshots of every dashboard page (docs/img/ui-*.png), taken by headless Chromium on a
# synthetic build with traffic; ~2 minutes.
screenshots: $(STAMP)
	$(BIN)/python bench/screenshots.py --out docs/img

# Peers side by side (docs/BENCHMARKS.md): SASRec, EASE, ALS, Markov and the two-stage, under
# our protocol and metrics. Installs the peers extra (torch's CPU build, from PyTorch's index:
# PyPI's Linux wheel brings CUDA) and RecTools without its numpy<2 pin; about an hour on 2 cores.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PEERS_STAMP := $(VENV)/.peers-stamp
$(PEERS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --extra-index-url $(TORCH_INDEX) -e '.[dev,peers]'
	$(BIN)/python -m pip install --quiet --no-deps rectools==0.19.0
	@touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)
	$(BIN)/python bench/peers.py --out bench-output/peers

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache *.egg-info
