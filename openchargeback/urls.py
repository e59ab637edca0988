"""URLs: the admin at OPENCHARGEBACK_ADMIN_PATH, the PI portal at /portal/, and the login,
logout and password-reset pages the portal uses at /accounts/. The site's root sends staff to
the admin and everyone else to the portal."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from statements.portal import auth_views
from statements.portal import views as portal_views

urlpatterns = [
    path(settings.OPENCHARGEBACK_ADMIN_PATH, admin.site.urls),
    path("portal/", include("statements.portal.urls")),
    path("accounts/", include(auth_views.urlpatterns)),
    path("", portal_views.root, name="root"),
]
