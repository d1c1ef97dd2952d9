"""The ASGI application: ingest endpoints, the publishing point API, and (next) the packagers."""
