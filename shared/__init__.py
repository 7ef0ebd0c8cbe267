"""The domain every cronwork service imports: models, settings, registries, timing and the protocol."""
