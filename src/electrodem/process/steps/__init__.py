"""The built-in process steps, one module each (each defines ``STEP``; see `electrodem.process.recipe`)."""
