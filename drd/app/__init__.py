"""The application layer: config → engine run → state, metrics and a typed outcome."""
