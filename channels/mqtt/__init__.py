"""Terminals (loudspeakers, displays) and partners over MQTT."""
