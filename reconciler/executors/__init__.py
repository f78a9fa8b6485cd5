"""Executors: run a job (a playbook against its targets) and report what happened. I/O.

``spec`` holds the values that cross this boundary, ``folding`` turns runner events into host
results (pure), ``ansible`` runs real ansible-playbook through one worker process per run
(``worker``, the only ansible_runner user) and ``fake`` is a scripted stand-in for engine tests.
"""
