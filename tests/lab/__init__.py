"""Tests of the lab: its harness, protocol cores, scenarios and command."""
