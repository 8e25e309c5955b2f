"""Built-in middleware. Each is selected by the compiler from the config; the server knows none
of them by name."""
