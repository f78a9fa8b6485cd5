"""The dashboard at ``/``: server-rendered pages over the engine's read models, sign-in with
an API key kept in a cookie, CSRF-protected actions on the approval queue. See
:mod:`reconciler.api.dashboard.routes`; ``routes`` is what :mod:`reconciler.api.app` mounts."""

from reconciler.api.dashboard.routes import routes

__all__ = ["routes"]
