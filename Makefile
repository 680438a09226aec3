# otseg: every target sets up what it needs (venv, system packages, Open vSwitch).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: test test-fast lint venv clean

venv: $(STAMP)

# The venv is made from Debian's python so that Mininet (a Debian package) is importable too.
$(STAMP): setup.cfg pyproject.toml
	test -x /usr/bin/python3
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

lint: $(STAMP)
	cd $(CURDIR) && $(VENV)/bin/lint-imports

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration" -q

test: $(STAMP) lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
