"""The plugin host: hook specifications, typed plugin records and the registry, and the
contracts (protocols) that plugins implement. Flow: first; everything resolves names here."""
