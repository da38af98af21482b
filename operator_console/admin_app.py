"""Django's admin app, installed with the operator console's site as its default site.

Listed in INSTALLED_APPS instead of ``django.contrib.admin`` (Django's documented way to
replace the default admin site): every ``admin.register`` and ``admin.site`` then mean
the console's site, with its second factor and short sessions (operator_console/site.py).
"""

from django.contrib.admin.apps import AdminConfig


class OperatorConsoleAdminConfig(AdminConfig):
    default_site = "operator_console.site.OperatorConsoleSite"
