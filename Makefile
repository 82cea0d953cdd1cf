# dynofa_ros developer entry points. `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
BUILD  := build/cmake

REQUIREMENTS := requirements/core.txt requirements/ros-wheels.txt requirements/dev.txt
PY_SOURCES   := $(shell find dynofa_ros -name '*.py' -not -path '*/__pycache__/*')
SHARE_FILES  := $(shell find launch config models -type f -not -name '*.pyc' 2>/dev/null)
MSG_FILES    := $(wildcard msg/*.msg srv/*.srv)

# The ROS environment every command below runs in: local discovery only.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export PYTHONDONTWRITEBYTECODE := 1
ROS_BUILD_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AMENT_PREFIX_PATH="$(CURDIR)/$(VENV)"

.PHONY: help setup test lint format demo clean

help:
	@echo "make demo    set up, replay the bundled co-runner scenario (all policies, the live graph for"
	@echo "             dynofa) on the simulated Xavier NX, write results/demo/report/report.html"
	@echo "make test    set up, then ruff and all tests"
	@echo "make setup   .venv with every dependency, messages built, package installed into it"
	@echo "make lint | format | clean"

setup: $(STAMPS)/installed

$(STAMPS)/apt: tools/apt-packages.txt tools/apt_install.sh
	bash tools/apt_install.sh tools/apt-packages.txt
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/deps: $(REQUIREMENTS) tools/fix_ros_wheel_cmake.py $(STAMPS)/apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	$(PY) tools/fix_ros_wheel_cmake.py $(VENV)
	@mkdir -p $(STAMPS) && touch $@

# The same CMakeLists.txt a robot's `colcon build` runs, installed into the venv's prefix.
$(BUILD)/CMakeCache.txt: $(STAMPS)/deps CMakeLists.txt package.xml
	@mkdir -p $(BUILD)
	$(ROS_BUILD_ENV) cmake -S . -B $(BUILD) -DCMAKE_PREFIX_PATH="$(CURDIR)/$(VENV)" \
	  -DCMAKE_INSTALL_PREFIX="$(CURDIR)/$(VENV)" -DPython3_EXECUTABLE="$(CURDIR)/$(PY)" \
	  -DBUILD_TESTING=OFF > $(BUILD)/configure.log 2>&1 || { cat $(BUILD)/configure.log; exit 1; }
	@touch $@

$(STAMPS)/installed: $(BUILD)/CMakeCache.txt cmake/entry_point.py.in $(MSG_FILES) $(PY_SOURCES) $(SHARE_FILES)
	$(ROS_BUILD_ENV) cmake --build $(BUILD) --target install -j 2 > $(BUILD)/install.log 2>&1 \
	  || { grep -v '^-- \(Up-to-date\|Installing\)' $(BUILD)/install.log | tail -n 60; exit 1; }
	@touch $@
	@echo "setup: ok ($(VENV) has dynofa_ros with its messages; run .venv/bin/dynofa)"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job on the embedded default: the bundled co-runner scenario (the Dynamic-OFA Fig. 7
# case) as a rosbag2, replayed in-process under every policy and live (three nodes over DDS, bag
# clock) under the Dynamic-OFA manager, then one report comparing them.
DEMO_SCENARIO ?= corunner_interference
DEMO_OUT      ?= results/demo
DEMO_DOMAIN   ?= 77
DYNOFA        := $(VENV)/bin/dynofa

demo: setup
	$(DYNOFA) scenario generate $(DEMO_SCENARIO) -o $(DEMO_OUT)/$(DEMO_SCENARIO).bag --overwrite --quiet
	$(DYNOFA) replay $(DEMO_OUT)/$(DEMO_SCENARIO).bag --policy all --fast -o $(DEMO_OUT)
	$(DYNOFA) replay $(DEMO_OUT)/$(DEMO_SCENARIO).bag --policy dynofa -o $(DEMO_OUT) --domain-id $(DEMO_DOMAIN)
	$(DYNOFA) report $(DEMO_OUT)/*.results.jsonl -o $(DEMO_OUT)/report \
	  --title "dynofa_ros demo: $(DEMO_SCENARIO) on the simulated Xavier NX"
	@echo "demo: open $(DEMO_OUT)/report/report.html (or report.md)"

clean:
	rm -rf build results
