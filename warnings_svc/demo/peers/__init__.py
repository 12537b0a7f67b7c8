"""Loopback simulators of peers that cannot run here, labelled so everywhere."""
