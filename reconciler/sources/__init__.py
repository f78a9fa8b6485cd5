"""Where snapshots come from: Git revisions and plain directories. I/O."""
