# The two commands of the README's Quick start: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The certified OpenID Provider the sign-in tests run against (panva oidc-provider, Node).
OIDC_PROVIDER := tests/support/oidc_provider
OIDC_PROVIDER_STAMP := $(OIDC_PROVIDER)/node_modules/.installed
# The portals' front-end assets (USWDS, htmx; axe-core for the browser tests), from npm.
ASSETS := hub/assets
ASSETS_STAMP := $(ASSETS)/node_modules/.installed
PYTEST_ARGS ?=
# Two pytest-xdist workers, a test file each at a time (its module's servers start once);
# each keeps its own database, broker, cache and folders (tests/support/parallel_workers.py).
PYTEST_WORKERS ?= 2

# Values for the test run only; a fresh random encryption key each run.
TEST_ENV := \
	SECRET_KEY=test-only-secret-key-not-for-production-0123456789abcdef \
	ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/payer_hub} \
	CELERY_BROKER_URL=$${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/15} \
	FIELD_ENCRYPTION_KEYS=$$($(PYTHON) -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
	OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \
	HTTPS=false \
	LOG_LEVEL=WARNING \
	PAYLOAD_STORAGE_DIR=$(CURDIR)/.test/payloads \
	SFTP_REPOSITORY_DIR=$(CURDIR)/.test/repository

.PHONY: demo test lint typecheck migrations-check pytest venv oidc-provider assets services clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Installed from the locked package-lock.json, never at test time; without npm the tests
# that need it say so and are skipped.
$(OIDC_PROVIDER_STAMP): $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(OIDC_PROVIDER) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the sign-in tests against oidc-provider will be skipped" >&2; \
	fi

oidc-provider: $(OIDC_PROVIDER_STAMP)

# Installed from the locked package-lock.json at build time, never at run time: the hub
# serves them itself (whitenoise), so it runs where there is no internet. npm comes from
# apt when it is missing and we are root.
$(ASSETS_STAMP): $(ASSETS)/package.json $(ASSETS)/package-lock.json
	@command -v npm >/dev/null || bash .ci/ensure-npm
	cd $(ASSETS) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed

assets: $(ASSETS_STAMP)

## Run the hub, a Celery worker and beat, and the sandbox payers, on this machine.
demo: $(STAMP) $(ASSETS_STAMP)
	$(PY) -m hub.demo

## Lint, type-check, check migrations and run every test against real services.
test: $(STAMP) $(ASSETS_STAMP) $(OIDC_PROVIDER_STAMP) services
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(PY) manage.py collectstatic --noinput -v0
	@# Request ids start at 1 again with every test database, and each run has its own key:
	@# payload files an earlier run left under the same names could only be unreadable.
	rm -rf .test/payloads* .test/repository*
	@mkdir -p .test
	@# mypy reads the code while the tests run (a minute of one core, which the two test
	@# workers leave idle much of the time, waiting on their servers); both must pass, and
	@# mypy reports last.
	$(TEST_ENV) $(VENV)/bin/mypy . > .test/mypy.log 2>&1 & types=$$!; \
	$(TEST_ENV) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); tests_rc=$$?; \
	wait $$types; types_rc=$$?; echo "mypy:"; cat .test/mypy.log; \
	exit $$(( tests_rc || types_rc ))

## Make sure PostgreSQL, Redis and OpenSSH's sshd are installed and running (installs with apt as root).
services:
	@bash .ci/ensure-services

clean:
	rm -rf $(VENV) .demo .test .mypy_cache .ruff_cache $(OIDC_PROVIDER)/node_modules $(ASSETS)/node_modules
