# Two commands a new user needs: `make demo` and `make test`. Both set up what they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test test-fast system-packages benchmark soak clean

# Quiet: what the first `make demo` prints is what a new user reads, so only what they act on.
$(BIN)/.installed: pyproject.toml
	@echo "Installing aws-root-exporter and its test tools into $(VENV) (once; about a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# The exporter on the built-in sandbox organization (no AWS account needed). It prints the
# inject command with the full path of $(BIN)/aws-root-exporter: $(BIN) is not on PATH.
demo: $(BIN)/.installed
	@$(BIN)/aws-root-exporter sandbox

# Debian packages the tests use (Prometheus, Alertmanager, Chromium; podman, buildah, runc and
# mmdebstrap for the image); installed when missing.
system-packages:
	@bash scripts/install-system-packages.sh

test: $(BIN)/.installed system-packages
	$(BIN)/python -m pytest

# The fast tier (under 90 s): unit and pure tests; no sandbox, exporter process or real tool (tests/conftest.py marks the rest slow).
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

# The exporter at 100, 1,000 and 10,000 accounts against a fake AWS (docs/performance.md).
benchmark: $(BIN)/.installed
	$(BIN)/python -m benchmarks

# 10 minutes at 1,000 accounts against the fake AWS with faults on: leaks, exactly-once (docs/soak.md).
soak: $(BIN)/.installed
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts benchmark-results.json soak-results.json
