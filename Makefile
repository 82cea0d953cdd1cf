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

# The ROS environment every command below runs in: local discovery only. The venv's rclpy is the
# Kilted wheel, which reads only ROS_AUTOMATIC_DISCOVERY_RANGE (Humble's reads ROS_LOCALHOST_ONLY;
# dynofa_ros/processes.py picks per distribution for the processes it starts).
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export PYTHONDONTWRITEBYTECODE := 1
ROS_BUILD_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AMENT_PREFIX_PATH="$(CURDIR)/$(VENV)"

.PHONY: help setup test lint format demo clean

help:
	@echo "make demo    set up, replay the bundled co-runner scenario (all policies, the live graph for"
	@echo "             dynofa) on the simulated Xavier NX, write results/demo/report/report.html"
	@echo "make test    set up, then ruff, mypy and all tests (the core also under Python 3.10 / 3.12)"
	@echo "make setup   .venv with every dependency, messages built, package installed into it"
	@echo "make test-matrix  the ROS-free core under Python 3.10 and 3.12 with the oldest torch /"
	@echo "             numpy / onnxruntime of the runtime matrix (venvs .venv-py310, .venv-py312)"
	@echo "make lint | format | clean"

setup: $(STAMPS)/installed

$(STAMPS)/apt: tools/apt-packages.txt tools/apt_install.sh
	bash tools/apt_install.sh tools/apt-packages.txt
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/deps: $(REQUIREMENTS) tools/fix_ros_wheel_cmake.py $(STAMPS)/apt
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "make setup needs Python 3.11 ($(PYTHON) is $$($(PYTHON) -V 2>&1)): the pinned set has no 3.10 wheels and pulls torch's CUDA build on 3.12; run make setup PYTHON=python3.11 (README: Supported runtime)" >&2; exit 1; }
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
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-matrix

# The ROS-free core (supernet, search, engine, manager, platform, family, the runtime check) under
# the robots' other Pythons -- Humble's 3.10 and Jazzy's 3.12 -- with the oldest torch / numpy /
# onnxruntime / OpenCV of the runtime matrix (requirements/matrix.txt). One venv per Python in a
# machine-wide cache, so a fresh clone (CI) reuses it: built once from PyPI (~5 GB each: PyPI's
# torch 2.3.1 is a CUDA build, run on the CPU), brought up to date by pip when the requirement
# files change (a stamp named by their hash).
MATRIX_PYTHONS ?= 3.10 3.12
MATRIX_DIR     ?= $(HOME)/.cache/dynofa_ros/matrix
MATRIX_REQS    := requirements/matrix.txt requirements/robot.txt
MATRIX_HASH    := $(shell cat $(MATRIX_REQS) | sha256sum | cut -c1-12)
MATRIX_VENVS   := $(foreach v,$(MATRIX_PYTHONS),$(MATRIX_DIR)/py$(subst .,,$(v)))
MATRIX_TESTS   ?= test/test_runtime_versions.py test/test_engine_prepared.py \
  test/test_engine_core.py test/test_engine_backends.py test/test_engine_preprocess.py \
  test/test_supernet_config.py test/test_supernet_network.py test/test_supernet_checkpoint.py \
  test/test_supernet_vit.py test/test_search_family.py test/test_search_lut.py \
  test/test_search_evolution.py test/test_manager_core.py \
  test/test_platform_sim.py test/test_platform_linux.py test/test_platform_jetson.py \
  test/test_discovery_env.py
# needs the once-for-all package (a test oracle, with torchvision): not part of the robot's set
MATRIX_DESELECT ?= test/test_search_lut.py::test_ofa_latency_table_reads_our_file_and_predicts_the_same

.PHONY: test-matrix
test-matrix: $(addsuffix /.ready-$(MATRIX_HASH),$(MATRIX_VENVS))
	@for venv in $(MATRIX_VENVS); do \
	  echo "test-matrix: $$($$venv/bin/python -c 'import sys, numpy, torch, onnxruntime, cv2; \
	    print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, \
	    onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}")')"; \
	  PYTHONPATH=. $$venv/bin/python -m pytest -q -p no:cacheprovider \
	    $(addprefix --deselect ,$(MATRIX_DESELECT)) $(MATRIX_TESTS) || exit 1; \
	done

# Under a lock: parallel clones share the cache.
$(MATRIX_DIR)/py%/.ready-$(MATRIX_HASH): $(MATRIX_REQS) tools/find_python.sh
	@mkdir -p $(MATRIX_DIR)
	@flock $(MATRIX_DIR)/.lock bash -euc 'test -f $@ && exit 0; \
	  if ! $(@D)/bin/python -c "import sys" 2>/dev/null; then \
	    py=$$(bash tools/find_python.sh $(shell echo $* | sed "s/^3/3./")); rm -rf $(@D); \
	    echo "test-matrix: building $(@D) with $$py (once: PyPI downloads ~3 GB)"; \
	    $$py -m venv $(@D); \
	  fi; \
	  echo "test-matrix: $(@D): pip install -r requirements/matrix.txt"; \
	  $(@D)/bin/python -m pip install -q --disable-pip-version-check -r requirements/matrix.txt; \
	  rm -f $(@D)/.ready-*; touch $@'

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
