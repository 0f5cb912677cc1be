"""Test helpers shipped with mosaic-runtime, for this repository's tests and for plugin authors.

Each module registers its tiny components through an isolated plugin host, the way a third-party
plugin would, so the runtime can be exercised without mosaic-layers or mosaic-data installed.
Importing a module here only defines classes and functions; nothing is registered until a
``*_registry()`` function is called.

- ``tiny_training``: ``TinyLM``, ``TinySequences``, ``TinyRamp``, ``tiny_registry()`` and
  ``TINY_PRESET`` for the training engine.
- ``tiny_agent``: ``TinyStreamLM`` (the streaming contract), ``TinyEventBytes``, ``agent_registry()``
  and ``make_run()`` that trains it for two steps, for the agent runtimes.
- ``train_entry``: ``python -m mosaic.runtime.testing.train_entry PRESET OUT`` runs the tiny preset
  in a separate process (kill/resume and torchrun tests).
- ``registry``: ``isolated_registry(plugins)``, a registry of only the plugins a test names.
- ``malformed_presets``: ``MALFORMED``, one broken variant of ``TINY_PRESET`` per kind of mistake,
  with the report text and ``$.path`` each must produce.
"""
