"""Ancla's service: settings, storage, HTTP API, batcher, anchor worker, CLI."""
