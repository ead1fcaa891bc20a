# Two commands on a fresh Debian machine: `make quickstart` (the main job) and `make test`.
# Each installs what it needs: Debian packages (through sudo when not root), a virtualenv, the package.

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
# The corpora (SWORD Bible modules + Python bindings, the Ding dictionary) and what a bare Debian lacks to make a venv.
APT_PACKAGES := sword-text-sparv sword-text-web python3-sword trans-de-en python3-venv python3-dev
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Pythons tfmobile runs on: pyproject.toml's requires-python, the one place the range is written.
PYTHON_RANGE := $(shell sed -n 's/^requires-python *= *"\([^"]*\)".*/\1/p' pyproject.toml)
# Empty when $(PYTHON) is in PYTHON_RANGE, else the one line that says why not (checked before making the venv).
python_misfit = $(shell $(PYTHON) -c '$(PYTHON_CHECK)' '$(PYTHON_RANGE)' '$(PYTHON)' 2>/dev/null \
  || echo "no $(PYTHON) found; tfmobile needs Python $(PYTHON_RANGE): run make PYTHON=python3.X")
PYTHON_CHECK := import operator as o, re, sys; \
  ops = {">=": o.ge, ">": o.gt, "<=": o.le, "<": o.lt, "==": o.eq, "!=": o.ne}; have = sys.version_info[:2]; \
  spec = re.findall(r"(>=|<=|==|!=|<|>) *([0-9]+)\.([0-9]+)", sys.argv[1]); \
  ok = spec and all(ops[op](have, (int(major), int(minor))) for op, major, minor in spec); \
  print("" if ok else "%s is Python %d.%d; tfmobile needs Python %s (its dependencies publish wheels for no other): \
run make PYTHON=python3.X with X in that range" % (sys.argv[2], have[0], have[1], sys.argv[1]))

.PHONY: quickstart test test-slow deps apt venv python-check clean

quickstart: deps
	$(BIN)/tfmobile quickstart

# pytest-xdist workers; each module's tests stay on one worker (--dist loadfile), as its module fixtures write
# beside the session's shared tiny runs (tests/conftest.py builds those once for all workers).
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: deps
	$(PYTEST)

test-slow: deps
	$(PYTEST) -m slow

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

python-check:
	$(if $(python_misfit),$(error $(python_misfit)))@:

$(VENV)/.installed: pyproject.toml
	$(if $(python_misfit),$(error $(python_misfit)))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info
