"""The Store interface, its backends, key naming, the timeline index and the server manifest."""
