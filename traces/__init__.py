"""Exporters and readers of a simulation's Timeline: Chrome/Perfetto trace JSON, profiler-style
CSVs, matplotlib figures. Depends on ascend_sim.timeline only."""
