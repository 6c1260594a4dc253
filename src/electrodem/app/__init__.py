"""The Hydra application: config validation, the route runner and sweep summaries."""
