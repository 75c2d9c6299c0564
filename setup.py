"""ament_python package for colcon on a ROS 2 machine, and plain pip elsewhere."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "rehab_robot"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/urdf", glob("urdf/*.urdf")),
        ("share/" + PACKAGE + "/config/patients", glob("config/patients/*.yaml")),
        ("share/" + PACKAGE + "/config/protocols", glob("config/protocols/*.yaml")),
        ("share/" + PACKAGE + "/config/hardware", glob("config/hardware/*.yaml") + glob("config/hardware/*.eds")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy", "pin", "PyYAML", "jsonschema", "rosbags", "mcap", "pyserial", "dynamixel-sdk",
                      "python-can", "canopen"],
    zip_safe=True,
    maintainer="rehab_robot maintainers",
    maintainer_email="maintainers@rehab-robot.invalid",
    description="ROS 2 control stack for an upper-limb rehabilitation arm",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "rehab-robot = rehab_robot.launcher:main",
            "hardware_driver = rehab_robot.nodes.driver_node:main",
            "motion_controller = rehab_robot.nodes.controller_node:main",
            "safety_supervisor = rehab_robot.nodes.supervisor_node:main",
            "session_manager = rehab_robot.nodes.session_node:main",
            "session_recorder = rehab_robot.nodes.recorder_node:main",
            "ft_sensor_driver = rehab_robot.nodes.ft_sensor_node:main",
        ],
        "rehab_robot.hardware": [
            "sim = rehab_robot.hardware.sim:SimulatedArm",
            "sim_faults = rehab_robot.hardware.fault_injection:FaultInjectingArm",
            "dynamixel = rehab_robot.hardware.dynamixel:DynamixelArm",
            "canopen = rehab_robot.hardware.canopen:CanopenArm",
        ],
    },
)
