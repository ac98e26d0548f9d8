# Two commands on a fresh machine: `make demo` runs the pipeline, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-stack test airflow lint bench-source bench-extract bench-text bench-download bench-score bench-dedup bench-dedup-scale bench-politeness \
	bench-plan bench-orchestration constraints clean

$(STAMP): requirements.txt pyproject.toml danqing/imgscan.pyx
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: $(STAMP)
	$(PY) scripts/demo.py

# The production topology as local processes: PostgreSQL, Redis, S3 (moto), Celery workers.
demo-stack: $(STAMP)
	$(PY) scripts/stack.py

test: $(STAMP)
	$(VENV)/bin/pytest

airflow: $(STAMP)
	$(PY) scripts/airflow_local.py standalone

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench-source: $(STAMP)
	$(PY) scripts/bench_source.py

bench-extract: $(STAMP)
	$(PY) scripts/bench_extract.py

bench-text: $(STAMP)
	$(PY) scripts/bench_text.py

bench-download: $(STAMP)
	$(PY) scripts/bench_download.py

bench-politeness: $(STAMP)
	$(PY) scripts/bench_politeness.py

bench-score: $(STAMP)
	$(PY) scripts/bench_score.py

bench-dedup: $(STAMP)
	$(PY) scripts/bench_dedup.py

# 5M rows through the partitioned tasks, then 1M the same way for the time-per-row ratio (~25 min, ~30 GB of /tmp).
bench-dedup-scale: $(STAMP)
	$(PY) scripts/bench_dedup_scale.py

bench-plan: $(STAMP)
	$(PY) scripts/bench_plan.py

bench-orchestration: $(STAMP)
	$(PY) scripts/bench_orchestration.py

# The Airflow image's lock: the versions of this venv, where the tests pass.
constraints: $(STAMP)
	scripts/constraints.sh > docker/constraints.txt

clean:
	rm -rf .airflow .stack data
