# Two commands a newcomer needs: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: setup test demo vulkan chromium clean bench

setup: $(STAMP) vulkan chromium

# Reinstall only when the dependency declarations change.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
	$(PY) -m pip install -qq -c constraints.txt torch
	# ray: the .[ray] extra, so the --engine ray tests run in CI too.
	$(PY) -m pip install -qq -c constraints.txt -e '.[maniskill,dev,ray]'
	touch $(STAMP)

vulkan:
	@bash scripts/install_vulkan.sh

chromium:
	@bash scripts/install_chromium.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/rewardswap demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
