"""`mnistlab serve`: a FastAPI app that classifies digits, and a page to draw them in.

Needs the `serve` extra (fastapi, uvicorn, python-multipart).
"""
