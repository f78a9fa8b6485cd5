"""One module per resource; each exposes ``routes(ctx) -> APIRouter``, included by app.py."""
