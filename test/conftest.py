"""Shared fixtures: DDS kept on localhost, one ROS domain per test, real node processes."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from rehab_robot.testing import BackgroundSpinner, NodeProcess

# DDS discovery never leaves this machine, for this process and every child.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

REPO = Path(__file__).resolve().parent.parent
_domains = itertools.count()


def next_domain_id() -> int:
    """Return a ROS_DOMAIN_ID for one test: distinct within this run, spread across runs by pid.

    ``REHAB_TEST_DOMAINS=LO-HI`` confines a run to those domains, so that two test runs
    on one machine (two checkouts) never share a graph.
    """
    lo, hi = (int(x) for x in os.environ.get("REHAB_TEST_DOMAINS", "11-100").split("-"))
    return lo + (os.getpid() * 7 + next(_domains)) % (hi - lo + 1)


@pytest.fixture
def domain_id() -> int:
    """A ROS domain of this test's own."""
    return next_domain_id()


@pytest.fixture
def start_node(tmp_path, domain_id):
    """Start node processes in this test's domain; every one is stopped at teardown."""
    started: list[NodeProcess] = []

    def start(module: str, name: str, **parameters) -> NodeProcess:
        node = NodeProcess(module, name, parameters, domain_id, tmp_path)
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


@pytest.fixture
def ros_client(domain_id):
    """An rclpy node in this test's domain, spun in a background thread."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("test_client", context=context)
    spinner = BackgroundSpinner(node, context)
    yield node
    # Forget this node's cached clients: a later node may get the same id().
    for key in [key for key in _clients if key[0] == id(node)]:
        del _clients[key]
    spinner.stop()
    node.destroy_node()
    rclpy.shutdown(context=context)


def wait_for(predicate, timeout: float, what: str, nodes=()) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` (with node output) after ``timeout`` [s]."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for node in nodes:
            if node.process.poll() is not None:
                pytest.fail(f"{node.name} exited ({node.process.returncode}) while waiting for {what}\n"
                            + _node_logs(nodes))
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n" + _node_logs(nodes))


def _node_logs(nodes) -> str:
    return "\n".join(f"--- {n.name} ---\n{n.output()[-3000:]}" for n in nodes)


_clients: dict = {}


def trigger_client(node, service: str, timeout: float = 30.0):
    """Return a ready std_srvs/Trigger client of ``service``, created once per node.

    Create clients early: a service answers only once discovery has matched both
    directions, which can lag behind ``wait_for_service``.
    """
    from std_srvs.srv import Trigger

    key = (id(node), service)
    if key not in _clients:
        client = node.create_client(Trigger, service)
        assert client.wait_for_service(timeout_sec=timeout), (
            f"service {service} not available; services seen: {node.get_service_names_and_types()}"
        )
        _clients[key] = client
    return _clients[key]


def call_trigger(node, service: str, timeout: float = 5.0):
    """Call a std_srvs/Trigger service and return its response."""
    from std_srvs.srv import Trigger

    future = trigger_client(node, service).call_async(Trigger.Request())
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.done(), f"service {service} did not answer within {timeout} s"
    return future.result()


def run_rehab_robot(arguments, domain_id: int, timeout: float, kill=None) -> tuple[int, str]:
    """Run ``rehab-robot ARGUMENTS`` (the launcher, real node processes) in ``domain_id``.

    ``kill(process)``, if given, is called once the launcher runs. On time-out [s] the
    launcher gets SIGINT and the test fails with the tail of its output.
    Returns (exit status, output).
    """
    import signal
    import subprocess
    import sys

    from rehab_robot.ros_env import localhost_env

    process = subprocess.Popen([sys.executable, "-m", "rehab_robot.launcher", *arguments],
                               env=localhost_env(domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if kill is not None:
        kill(process)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"rehab-robot {arguments[0]} did not finish in {timeout} s:\n{output[-5000:]}")
    return process.returncode, output
