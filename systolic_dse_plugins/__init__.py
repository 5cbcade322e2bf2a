"""The plugins shipped with systolic-dse. Each module is registered through the ``dse``
entry-point group in pyproject.toml, exactly as a third-party plugin would be."""
