# The two commands of the README: `make run` and `make test`. Both first make sure
# .venv exists, matches the requirement files and holds this project installed in
# editable mode (a stamped, idempotent step), so that `python -m search.run`,
# `import crossbar` and the scripts in bench/ and examples/ work from any folder.
# PYTHON: a Python 3.12 or 3.13 that runs (tools/find-python says where it looks); set it
# to choose another: make test PYTHON=/path/to/python3.12
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell sh tools/find-python)
endif
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# A .venv whose Python no longer runs or is not 3.12/3.13 (one made for the Python 3.11
# stack before) loses its stamp, so the rule below rebuilds it instead of mixing stacks.
ifneq ($(wildcard $(STAMP)),)
ifeq ($(shell sh tools/find-python --check $(PY) 2>/dev/null && echo ok),)
$(shell rm -f $(STAMP))
endif
endif

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
	$(PY) bench/cost_eval.py

venv: $(STAMP)

# Rebuilt when the requirement files change or when .venv was made by another Python
# version than PYTHON's.
# pip is idempotent, so an interrupted install simply runs again next time. The project
# itself is installed without build isolation: its build needs setuptools and wheel,
# pinned in requirements-dev.txt, and no download.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@sh tools/find-python --check "$(PYTHON)"
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print(sys.version_info[:2])' 2>/dev/null)" = "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" ]; then :; else \
		echo "making $(VENV) with $(PYTHON)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	sh tools/build-cacti $(PY)
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
