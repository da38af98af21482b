"""gunicorn's settings for the hub: ``gunicorn hub.wsgi --config python:hub.gunicorn_config``.

The hub writes its own access log (``hub.access``, hub/request_context.py: JSON lines with
the request id, method, path, status and duration). gunicorn's is off; turned on with
``--access-logfile``, it records the path without the query string too, which can carry an
OpenID Connect ``code`` and ``state`` or a member's search terms (PHI never in logs).
"""

accesslog = None
# %(U)s is the path alone; gunicorn's default (%(r)s, the request line) has the query string.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
