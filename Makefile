# pedf-gateway — every target creates .venv and installs the project when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests and benchmarks start as real servers (package:binary)
DEBS := influxdb:/usr/bin/influxd victoria-metrics:/usr/bin/victoria-metrics mosquitto:/usr/sbin/mosquitto \
        mbpoll:/usr/bin/mbpoll socat:/usr/bin/socat

.PHONY: demo test bench lint debs venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,report]'
	touch $(STAMP)

venv: $(STAMP)

debs:
	@missing=""; for pair in $(DEBS); do pkg=$${pair%%:*}; bin=$${pair#*:}; \
	  [ -x "$$bin" ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

demo: $(STAMP)
	$(VENV)/bin/pedf demo examples/demo-site.yaml

test: $(STAMP) debs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:cacheprovider

bench: $(STAMP) debs
	$(PY) -m benchmarks.run_all

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache .hypothesis
