"""The environments of the processes a run starts. Pure: the parent's environment is an argument.

Why: the process that resolves a ``valueFrom: {env: NAME}`` secret (the daemon, ``reconciler
run``) has NAME in its own environment, and a child started the usual way inherits all of it;
ansible-runner then copies its own environment into ansible-playbook's (and into
``artifacts/*/command``). So nothing a run starts is given the parent's whole environment:

- the zygote and a worker started afresh get :func:`bootstrap_environment`: what starting
  Python needs (``PATH``, ``HOME``, the user and locale, ``TZ``, ``TMPDIR``) and ``PYTHONPATH``
  with our package first; nothing else;
- ansible-playbook and every process it runs get :func:`run_environment`, which the parent
  sends to the worker inside the job (on stdin) and the worker makes its ``os.environ`` before
  it calls runner: the same variables plus those Ansible and its connections read
  (``ANSIBLE_*``, ``SSH_AUTH_SOCK``, Kerberos, proxies, CA bundles);
- the detached process of ``reconciler run`` without ``--wait`` gets
  :func:`scrubbed_environment`: its parent's environment minus the hidden variables (it opens
  the state, which may need ``PG*`` variables, and passes only the above on).

Each drops every variable named in ``hidden`` (the engine passes every variable that a
``valueFrom``, ``secretFrom``, ``userFrom`` or ``passwordFrom`` of the applied state names) and
every variable whose value is one of the run's secrets, even when its name is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping

#: what starting Python needs (the zygote, a worker started afresh)
BOOTSTRAP_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
#: what ansible-playbook, its connection plugins and its modules may read besides
RUN_NAMES = BOOTSTRAP_NAMES | {
    "SHELL",
    "PYTHONPATH",
    "SSH_AUTH_SOCK",
    "KRB5CCNAME",
    "KRB5_CONFIG",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
}
BOOTSTRAP_PREFIXES = ("LC_",)
RUN_PREFIXES = ("LC_", "ANSIBLE_")


def _keep(name: str, value: str, hidden: Collection[str], secret_values: Collection[str]) -> bool:
    return name not in hidden and value not in secret_values


def _secret_values(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v for v in values if v)


def _allowed(
    parent: Mapping[str, str],
    names: frozenset[str],
    prefixes: tuple[str, ...],
    hidden: Collection[str],
    secret_values: Iterable[str],
) -> dict[str, str]:
    values = _secret_values(secret_values)
    return {
        k: v
        for k, v in parent.items()
        if (k in names or k.startswith(prefixes)) and _keep(k, v, hidden, values)
    }


def bootstrap_environment(
    parent: Mapping[str, str],
    package_root: str,
    hidden: Collection[str] = (),
    secret_values: Iterable[str] = (),
) -> dict[str, str]:
    """The environment of the zygote and of a worker started afresh."""
    env = _allowed(parent, BOOTSTRAP_NAMES, BOOTSTRAP_PREFIXES, hidden, secret_values)
    theirs = run_environment(parent, hidden, secret_values).get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, theirs) if p)
    return env


def run_environment(
    parent: Mapping[str, str], hidden: Collection[str] = (), secret_values: Iterable[str] = ()
) -> dict[str, str]:
    """The environment ansible-playbook is started with (before runner adds its own)."""
    return _allowed(parent, RUN_NAMES, RUN_PREFIXES, hidden, secret_values)


def scrubbed_environment(
    parent: Mapping[str, str], hidden: Collection[str] = (), secret_values: Iterable[str] = ()
) -> dict[str, str]:
    """``parent`` without the hidden variables and without any that holds a secret."""
    values = _secret_values(secret_values)
    return {k: v for k, v in parent.items() if _keep(k, v, hidden, values)}


def exposes(env: Mapping[str, str], hidden: Collection[str], secret_values: Iterable[str]) -> bool:
    """Whether ``env`` holds a hidden variable or a secret (a zygote started earlier may)."""
    return scrubbed_environment(env, hidden, secret_values) != dict(env)
