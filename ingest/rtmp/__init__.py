"""RTMP ingest: handshake, chunk stream and the publish session (Adobe RTMP specification 1.0)."""
