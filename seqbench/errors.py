"""The one exception type for bad input; the CLI turns it into one line and exit code 2."""


class ConfigError(ValueError):
    """Bad user input: the message says what is wrong and how to fix it."""
