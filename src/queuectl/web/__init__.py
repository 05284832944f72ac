"""The web dashboard (`queuectl dashboard`, extra `web`): Starlette, Jinja2, uvicorn.

Imported only by the dashboard command: the CLI never loads the web stack otherwise."""
