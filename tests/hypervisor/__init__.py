"""Tests of corral.hypervisor (package, so test module names may repeat elsewhere)."""
