# Two commands do everything on a fresh Debian 12 machine as root:
#   make run    set up, provision Asterisk, run the command center on the example config
#   make test   set up, provision Asterisk, run the whole test suite
# Everything else here is what those two need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/siaga.example.yaml
# Debian packages the center and its tests use (Asterisk itself comes from `siaga provision`;
# kamailio is the SIP edge of a topology of several nodes, run by siaga, never as a service).
DEB_PACKAGES := debootstrap espeak-ng sox postgresql chromium chromium-driver systemd kamailio

.PHONY: run test setup deb venv provision lint unit

run: setup
	$(BIN)/siaga up --config $(CONFIG)

# The suite runs in TEST_WORKERS pytest-xdist workers (TEST_WORKERS=0: serially, in one
# process). --dist loadfile keeps each test file in one worker: a file's module-scoped
# center is started once, not once per worker. --no-loadscope-reorder keeps the collected
# order (db, e2e, then the many short unit files), so the short files fill the workers' tail
# instead of a long end-to-end file starting last. Extra pytest arguments: PYTEST_ARGS.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  $(PYTEST_ARGS)

setup: deb venv provision

deb:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  case "$$missing " in *" kamailio "*) \
	    echo "kamailio: the system service stays off (siaga starts its own edge)"; \
	    if [ -d /run/systemd/system ]; then systemctl disable --now kamailio; \
	    else rm -f /etc/systemd/system/multi-user.target.wants/kamailio.service; fi;; \
	  esac; \
	fi

$(BIN)/siaga: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/siaga

provision: venv
	$(BIN)/siaga provision

lint: venv
	$(BIN)/ruff check .

unit: venv
	$(BIN)/python -m pytest -ra tests/unit
