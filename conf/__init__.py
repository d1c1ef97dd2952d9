"""Configuration model, logging set-up, and the example configuration file."""
