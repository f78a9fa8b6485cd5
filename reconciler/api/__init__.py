"""The HTTP edge of ``serve``: FastAPI routes over the engine (the only FastAPI/uvicorn users)."""
