"""The switching-energy machinery: gate netlists and the toggle simulator, the PE
characterisation, per-layer switching statistics, per-layer calibration, and the pipeline
that builds their inputs (each stage cached)."""
