# Two commands on a fresh Debian machine: `make quickstart` (the main job) and `make test`.
# Each installs what it needs: Debian packages (through sudo when not root), a virtualenv, the package.

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
# The corpora (SWORD Bible modules + Python bindings, the Ding dictionary) and what a bare Debian lacks to make a venv.
APT_PACKAGES := sword-text-sparv sword-text-web python3-sword trans-de-en python3-venv python3-dev
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: quickstart test test-slow deps apt venv clean

quickstart: deps
	$(BIN)/tfmobile quickstart

test: deps
	$(BIN)/pytest -q

test-slow: deps
	$(BIN)/pytest -q -m slow

deps: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
