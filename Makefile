# Two commands a new user needs: `make demo` and `make test`. Both set up what they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test system-packages benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The exporter on the built-in sandbox organization (no AWS account needed).
demo: $(BIN)/.installed
	$(BIN)/aws-root-exporter sandbox

# Debian packages the tests use (Prometheus, Alertmanager, Chromium); installed when missing.
system-packages:
	@bash scripts/install-system-packages.sh

test: $(BIN)/.installed system-packages
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
