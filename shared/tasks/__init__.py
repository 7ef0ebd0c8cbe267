"""The task types cronwork ships, published under the ``cronwork.task_types`` entry points like any plugin."""
