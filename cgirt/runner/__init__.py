"""The runner: supervisor, dispatch, cache, sandbox, response and the three executors."""
