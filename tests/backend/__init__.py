"""Tests of corral.backend (package, so test module names may repeat elsewhere)."""
