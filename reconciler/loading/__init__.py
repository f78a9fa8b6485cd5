"""Turning a snapshot of a repository into a desired state and diagnostics. Pure.

The loader never reads the clock or the file system itself: it is handed a
:class:`~reconciler.model.snapshot.Snapshot` (whose ``read`` is the only I/O), ``now`` and an
optional parse cache.
"""
