# `make demo` trains the digits experiment; `make test` runs the suite. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is the CPU build on this project's machines; it is only used by the tests that compare
# against the authors' PyTorch networks and pytorch-fid. torchvision 0.28.0 is the release built for torch 2.13.0
# (pytorch-fid builds its Inception from torchvision's); pinned beside it so that pip keeps this torch.
TEST_EXTRAS := torch==2.13.0 torchvision==0.28.0

.PHONY: venv demo test chromium format bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' $(TEST_EXTRAS)
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m experiments.digits --demo

# The report test opens a page in headless Chromium (Debian's package; browser downloads need a network).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "note: chromium is missing and cannot be installed here (needs apt-get and root); its test will skip"

test: venv chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n 2 -q tests

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv
	$(PY) -m wngan_jax.bench --what=all

clean:
	rm -rf $(VENV) runs
