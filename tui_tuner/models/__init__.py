"""Model specs (config.json only), the catalog, the offline demo model."""
