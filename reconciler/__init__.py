"""reconciler: a GitOps reconciler for scheduled infrastructure jobs.

Operations teams keep job templates, schedules, targets, access policy and notification
channels as YAML in Git; reconciler plans and applies them, fires every schedule exactly once
per slot and runs each job as an Ansible playbook.
"""

__version__ = "0.1.0"
