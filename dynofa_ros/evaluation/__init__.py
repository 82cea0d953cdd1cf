"""Evaluation: scenario bags, per-frame results, metrics and reports.

Layering: this package uses the core (and, for the live replay only, the nodes); nothing below it
imports it, and it never imports rclpy itself. Bags are read and written with the pure-Python
``rosbags`` package, so a scenario can be generated and a report written on a machine without ROS.

Modules, one concern each:

- ``scenario``: scenario model, YAML loader and validation (``ScenarioError`` names the field);
  ``load(resolve(name_or_path))`` gives a :class:`~.scenario.Scenario`;
- ``timeline``: a scenario as one time-ordered stream of frames (with ground truth) and events,
  without a bag (``iter_timeline``): what the in-process mode plays and the generator writes;
- ``camera``: frame sources: Fashion-MNIST items composed into camera frames, a video file;
- ``topics``: the topic contract shared by generator, replay and metrics;
- ``bagio``: message types (``Stores.ROS2_KILTED`` + ``msg/*.msg``), atomic bag writer, reader;
- ``generate``: scenario -> rosbag2 bag (sqlite3 or mcap);
- ``scenario_bag``: inspect / validate a bag (generated or recorded on a robot) as replay input;
- ``records``: the per-frame record and the other run records, the record builder, the results
  file (JSON lines) and the per-frame CSV;
- ``result_bag``: result bag (everything the nodes published during a replay) -> records;
- ``metrics``: latency percentiles, misses, accuracy, energy, battery, temperature, switches,
  reaction time to each event;
- ``plots``, ``report``: Markdown + HTML report with PNG plots and per-frame CSV per run;
- ``loop``: the closed loop every runner shares (manager, perception sessions, records);
- ``inprocess``: that loop in simulated time (fast replay of a bag, or a scenario's own
  timeline); ``realtime``: that loop on this machine's clock;
  ``simulate_cli``: ``dynofa simulate SCENARIO`` (that loop, no bag, per policy);
- ``scenario_cli``: ``dynofa scenario generate | check | list``; ``report_cli``:
  ``dynofa report RESULTS... -o DIR``.
"""
