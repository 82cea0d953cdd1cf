"""Offline stage of Dynamic-OFA: latency profiling (per-layer lookup tables in once-for-all's YAML
format and whole-network measurements), accuracy measurement and predictor, evolutionary search,
Pareto fronts and family files. No ROS import; torch only where a network is built or timed."""
