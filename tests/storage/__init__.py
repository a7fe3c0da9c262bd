"""Tests of corral.storage (package, so test module names may repeat elsewhere)."""
