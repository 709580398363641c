"""Test doubles that speak the real protocols of the services StarGraph talks to."""
