"""The one exception type for mistakes in what the user gave (a path, an argument, a config value).

Any stage or command may raise it; the CLI prints its message as one line and exits 2, with no
traceback (danqing --debug shows one). Inside Airflow it fails the task like any other error.
"""


class UserError(ValueError):
    """Something the user gave cannot be used; the message says what and how to fix it, in one line."""
