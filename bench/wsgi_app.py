"""The API's WSGI app for servers other than ``backprop api``'s own (bench/servers.py):
``create_app`` on the settings of the environment, logging as ``backprop api`` sets it up. Each
server imports it in each of its worker processes."""

from service.api.app import create_app
from service.logs import configure_logging
from service.settings import Settings

settings = Settings.from_env()
configure_logging(settings)
app = create_app(settings)
