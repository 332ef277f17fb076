# onggi: `make demo` runs a container from the bundled busybox image; `make test` runs the tests.
# Both install what is missing first (Debian packages via apt-get, Python packages into .venv).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Debian's own 3.11 is an optimised build: onggi starts about 1.5 ms faster on it than on
# an unoptimised pyenv build, and engines start onggi for every event.
BASE_PY := $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3)
APT_PKGS := busybox-static libcap-dev libseccomp2 libseccomp-dev gcc python3-dev python3-venv \
	runc crun umoci skopeo docker-registry zstd openssl iproute2 util-linux
DEMO := /tmp/onggi-demo

.PHONY: deps pyc demo test lint bench clean

deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -x $(PY) || $(BASE_PY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q --config-settings editable_mode=compat -e '.[test]'
	$(PY) -m runtime.launcher $(VENV)/bin/onggi
	@touch $@

demo: deps pyc
	@rm -rf $(DEMO) && $(PY) bundles/busybox.py $(DEMO)/bundle \
	  --args 'sh -c "echo hostname: $$(hostname); echo pid: $$$$; echo --- mounts; cat /proc/self/mounts; echo --- uid_map; cat /proc/self/uid_map"' >/dev/null
	$(VENV)/bin/onggi --root $(DEMO)/state run --bundle $(DEMO)/bundle onggi-demo
	@echo "--- after: onggi list"; $(VENV)/bin/onggi --root $(DEMO)/state list
	@if [ -x bundles/demo-image.sh ]; then bundles/demo-image.sh; fi
	@rm -rf $(DEMO)

test: deps pyc
	$(PY) -m pytest -q spec-tests

lint: deps
	$(VENV)/bin/ruff check runtime spec-tests bundles conformance

bench: deps pyc
	$(PY) conformance/bench.py

# Byte-compile onggi: engines start it for every event, and the environment here may set
# PYTHONDONTWRITEBYTECODE, which would make every start compile the sources again.
pyc: deps
	@$(PY) -m compileall -q runtime

clean:
	rm -rf $(VENV) build *.egg-info

# Pure cgroup v2 and systemd, for real: the tests marked cgroupv2/systemd and the lifecycle
# suite, in a throw-away qemu guest (conformance/v2vm, built on first use). `make test` runs
# them too; this runs only them.
.PHONY: test-v2 v2vm
test-v2: deps pyc
	$(PY) -m pytest -q -rA spec-tests/v2guest

v2vm:
	conformance/v2vm/build.sh
