"""The web console: the deployment at a glance, served by the control API at ``/console/``.

Server-rendered (Jinja2 templates in ``templates/``), one small script for live updates and
one stylesheet (``static/``), both served by Falcon itself: the console works with no internet
access and needs no build step. ``routes.py`` is the router, ``views.py`` the pure decisions
(formatting, memory levels, paging, chart points), ``api_reader.py`` the in-process calls to
the control API's own endpoints, ``sessions.py`` the sign-in with the admin token.
"""
