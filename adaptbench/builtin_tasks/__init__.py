"""Built-in benchmark tasks: each module here defines a ``TASKS`` list (``_`` files are helpers)."""
