"""From desired and actual state to a plan: diffs, approval hashes, impacts, plan files. Pure."""
