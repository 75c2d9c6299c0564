# rehab_robot: quick start is `make demo` and `make test` on a fresh clone.
# Both create or refresh .venv with pinned packages: ROS 2 Jazzy wheels by default,
# Kilted with `make test ROS_DISTRO=kilted`.

ROS_DISTRO ?= jazzy
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(ROS_DISTRO)
PYTEST_ARGS ?=

# DDS stays on this machine, on a domain of its own unless the user already chose one.
export ROS_DISTRO
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
ifneq ($(filter humble iron,$(ROS_DISTRO)),)
export ROS_LOCALHOST_ONLY := 1
endif

.PHONY: venv demo test unit integration bench clean

venv: $(STAMP)

# One distro per .venv: switching ROS_DISTRO rebuilds it rather than mixing wheels.
$(STAMP): requirements/common.txt requirements/$(ROS_DISTRO).txt setup.py
	@if ls $(VENV)/.installed-* >/dev/null 2>&1 && ! test -e $@; then echo "ROS_DISTRO changed: rebuilding $(VENV)"; rm -rf $(VENV); fi
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements/$(ROS_DISTRO).txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# setup.cfg puts the scripts in lib/rehab_robot, where `ros2 run rehab_robot ...` looks;
	@# the venv's bin/ gets the operator's command so it is on PATH once the venv is active.
	ln -sf ../lib/rehab_robot/rehab-robot $(VENV)/bin/rehab-robot
	@touch $@

demo: $(STAMP)
	$(VPY) -m rehab_robot.launcher demo

test: $(STAMP)
	$(VPY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(VPY) -m pytest -m "not integration" $(PYTEST_ARGS)

integration: $(STAMP)
	$(VPY) -m pytest -m integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(VPY) bench/run_all.py

clean:
	rm -rf $(VENV) build install log .pytest_cache sessions
