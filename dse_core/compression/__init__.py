"""Weight compression: selection contracts, the compression study file, the accept/revert
session that schedules drive, and the saved compressed model."""
