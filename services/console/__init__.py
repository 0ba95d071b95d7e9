"""Console: the web console's page, scripts and configuration, for browsers."""
