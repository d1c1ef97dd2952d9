"""Receivers: fragmented-MP4 HTTP ingest (Smooth and CMAF), publishing-point lifecycle."""
