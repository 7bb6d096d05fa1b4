//! End-to-end and fault suites for layercake (tests live in `tests/tests/`).
