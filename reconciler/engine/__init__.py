"""Composition of the pure stages with I/O: loading revisions, planning, applying, firing."""
