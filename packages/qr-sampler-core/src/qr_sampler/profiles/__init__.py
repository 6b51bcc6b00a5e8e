"""Deployment profiles (``deployments/NAME``): found, created and checked."""
