"""The commands the README shows exist and work as written.

Every ``make`` target and every ``rehab-robot`` subcommand named in README.md is
checked to exist; the ones that need no running graph are run (the operator's commands
need one: test/test_operator_integration.py runs each against the real nodes; ``make
test`` is what runs this; the colcon commands need a ROS 2 distro).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rehab_robot import resources
from rehab_robot.ros_env import localhost_env

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
# As the reader sees them: in `inline code` or at the start of a line of a code block.
SUBCOMMANDS = sorted(set(re.findall(r"(?:`|^)rehab-robot ([a-z][a-z-]+)", README, flags=re.MULTILINE)))
MAKE_TARGETS = sorted(set(re.findall(r"\bmake ([a-z]+)\b", README)))


def rehab_robot(*args, timeout=60, domain=None):
    """Run the ``rehab-robot`` command as the README's reader would (the venv's script)."""
    script = Path(sys.executable).parent / "rehab-robot"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rehab_robot.launcher"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          env=localhost_env(domain), check=False)


def test_the_readme_names_commands():
    """The lists below are read from the README: an edit that breaks the pattern is caught here."""
    assert {"run", "demo", "check", "backends", "graph", "status", "pause"} <= set(SUBCOMMANDS)
    assert {"demo", "test"} <= set(MAKE_TARGETS)


@pytest.mark.skipif(not os.environ.get("VIRTUAL_ENV") and not (REPO / ".venv").exists(),
                    reason="runs where the Makefile built .venv")
def test_rehab_robot_is_on_the_venvs_path():
    """After `make venv` (as `make demo` / `make test` do), .venv/bin/rehab-robot runs."""
    script = REPO / ".venv" / "bin" / "rehab-robot"
    assert script.exists(), "make venv must link the rehab-robot command into .venv/bin"
    done = subprocess.run([str(script), "backends"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "sim" in done.stdout, done.stderr


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_the_readme_shows_exists(subcommand):
    """`rehab-robot SUBCOMMAND --help` works for each one the README names."""
    done = rehab_robot(subcommand, "--help")
    assert done.returncode == 0, f"rehab-robot {subcommand}: {done.stderr}"
    assert "usage:" in done.stdout


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_every_make_target_the_readme_shows_exists(target):
    """`make -n TARGET` knows each target the README names."""
    done = subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_commands_that_need_no_graph_run_as_written(tmp_path):
    """backends, graph and check with the shipped examples print what the README says."""
    backends = rehab_robot("backends")
    assert backends.returncode == 0 and "sim" in backends.stdout
    graph = rehab_robot("graph")
    assert graph.returncode == 0 and "hardware_driver" in graph.stdout
    check = rehab_robot("check", "--patient", str(resources.example_patient()),
                        "--protocol", str(resources.example_protocol()))
    assert check.returncode == 0, check.stderr
    repair = rehab_robot("repair-bag", str(tmp_path / "no_such_bag"))
    assert repair.returncode == 2 and "Traceback" not in repair.stderr
