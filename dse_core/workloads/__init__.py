"""Workloads: models and datasets (plugins), float training with safe checkpoints, torch
tracing and SCALE-Sim topology/config/report files, all to :class:`~dse_core.types.LayerSpec`."""
