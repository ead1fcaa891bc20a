# Two commands on a fresh Debian machine: `make quickstart` (the main job) and `make test`.
# Each installs what it needs: Debian packages (through sudo when not root), a virtualenv, the package.

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
# The corpora (SWORD Bible modules + Python bindings, the Ding dictionary) and what a bare Debian lacks to make a venv.
APT_PACKAGES := sword-text-sparv sword-text-web python3-sword trans-de-en python3-venv python3-dev
# The Android core's JVM tests (tests/test_android_core.py): JUnit 4 from Debian, on the machine's Java.
TEST_APT_PACKAGES := junit4 libhamcrest-java
# Commands the tests need, and the Debian package that brings each when it is missing. By command, not package:
# a machine whose Java or npm came from elsewhere (a JDK, NodeSource) keeps its own.
TEST_APT_COMMANDS := java:default-jre-headless npm:npm
# The Kotlin compiler the tests compile the core with: the Gradle Kotlin plugin's version, read from the
# app's version catalog (the one place it is written), installed from npm into .tools/.
KOTLIN_VERSION := $(shell sed -n 's/^kotlin *= *"\([^"]*\)".*/\1/p' android_demo/gradle/libs.versions.toml)
TOOLS     := .tools
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

.PHONY: quickstart test test-slow test-notebooks notebooks-sync wheel deps test-deps apt test-apt kotlin venv python-check clean

quickstart: deps
	$(BIN)/tfmobile quickstart

# pytest-xdist workers; each module's tests stay on one worker (--dist loadfile), as its module fixtures write
# beside the session's shared tiny runs (tests/conftest.py builds those once for all workers).
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# TFMOBILE_REQUIRE_JVM: the tools are installed here, so the Android core's JVM tests may not skip.
test: test-deps
	TFMOBILE_REQUIRE_JVM=1 $(PYTEST)

test-slow: test-deps
	TFMOBILE_REQUIRE_JVM=1 $(PYTEST) -m slow

# The notebooks (notebooks/*.ipynb) executed top to bottom in tiny mode (tests/test_notebooks.py), one at a time.
test-notebooks: deps
	$(BIN)/pytest -q -m notebooks tests/test_notebooks.py

# Rewrite the notebooks' shared setup cell and Colab badges, and clear their outputs (notebooks/sync.py).
notebooks-sync: deps
	$(BIN)/python notebooks/sync.py

# The wheel a notebook's TFMOBILE_SOURCE can point at (upload it to Colab): dist/tfmobile-<version>-py3-none-any.whl
wheel: deps
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .

deps: apt venv

test-deps: deps test-apt kotlin

# $(call apt_install,PACKAGES,COMMAND:PACKAGE pairs): install those of them not yet there, in one apt-get call.
apt_install = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	for cp in $(2); do command -v $${cp%%:*} >/dev/null 2>&1 || missing="$$missing $${cp\#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

apt:
	@$(call apt_install,$(APT_PACKAGES),)

test-apt:
	@$(call apt_install,$(TEST_APT_PACKAGES),$(TEST_APT_COMMANDS))

kotlin: $(TOOLS)/kotlin-$(KOTLIN_VERSION).installed

$(TOOLS)/kotlin-$(KOTLIN_VERSION).installed: android_demo/gradle/libs.versions.toml
	$(if $(KOTLIN_VERSION),,$(error no kotlin = "X.Y.Z" line in android_demo/gradle/libs.versions.toml))
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --no-save --loglevel=error kotlin-compiler@$(KOTLIN_VERSION)
	$(TOOLS)/node_modules/kotlin-compiler/bin/kotlinc -version 2>&1 | grep -q "$(KOTLIN_VERSION)"
	rm -f $(TOOLS)/kotlin-*.installed
	touch $@

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
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info
