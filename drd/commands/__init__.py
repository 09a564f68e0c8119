"""One module per command: compose settings, resources and an engine; render the result."""
