"""The WSGI entry point gunicorn serves: ``gunicorn services.api.wsgi:app``."""

from services.api.app import create_app

app = create_app()
