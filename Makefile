# The two commands of the README: `make run` and `make test`. Both first make sure
# .venv exists, matches the requirement files and holds this project installed in
# editable mode (a stamped, idempotent step), so that `python -m search.run`,
# `import crossbar` and the scripts in bench/ and examples/ work from any folder.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint venv bench clean-venv

# The main job; --resume makes a second call continue (or just re-report) the same run.
run: $(STAMP)
	$(PY) -m search.run scenarios/drift_1day.yaml --resume

demo: $(STAMP)
	$(PY) examples/crossbar_demo.py

test: $(STAMP)
	$(PY) -m pytest

# ruff's configuration is in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The CPU benchmarks, about an hour on 2 cores; each script also runs on its own (docs/performance.md,
# docs/results.md).
bench: $(STAMP)
	$(PY) bench/mc_eval.py
	$(PY) bench/periphery_profile.py
	$(PY) bench/cnn_eval.py
	$(PY) bench/train_speed.py
	$(PY) bench/parallel_trials.py
	$(PY) bench/hardware_aware.py
	$(PY) bench/search_efficiency.py
	$(PY) bench/methods_over_seeds.py
	$(PY) bench/detection.py

venv: $(STAMP)

# Rebuilt when the requirement files change or when .venv was made by another Python.
# pip is idempotent, so an interrupted install simply runs again next time. The project
# itself is installed without build isolation: its build needs setuptools and wheel,
# pinned in requirements-dev.txt, and no download.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "Python 3.11 is required (aihwkit 1.1.0 wheels); found %d.%d at $(PYTHON). Set PYTHON=/path/to/python3.11." % v)'
	@if [ -x $(PY) ] && $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then :; else \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
