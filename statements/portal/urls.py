from django.urls import path

from . import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("pi/<int:pi_id>/", views.statements, name="statements"),
    path("pi/<int:pi_id>/open/", views.open_month, name="open"),
    path("pi/<int:pi_id>/charges/<str:period_key>.csv", views.charges_csv, name="charges_csv"),
    path("statements/<int:statement_id>/", views.statement_detail, name="statement"),
    path("statements/<int:statement_id>/pdf/", views.statement_pdf, name="statement_pdf"),
    path("profile/", views.profile, name="profile"),
    path("profile/name/", views.profile_name, name="profile_name"),
    path("profile/delegates/", views.delegate_grant, name="delegate_grant"),
    path(
        "profile/delegates/<int:delegate_id>/revoke/",
        views.delegate_revoke,
        name="delegate_revoke",
    ),
]
