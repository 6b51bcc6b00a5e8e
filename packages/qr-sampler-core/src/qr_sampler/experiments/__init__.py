"""Experiment design: arms served side by side, calibration of a source, and the
uniformity statistics both rely on."""
