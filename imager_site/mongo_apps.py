"""Django's own apps with ObjectId primary keys, for the MongoDB profile.

django-mongodb-backend cannot store integer auto keys, so on MongoDB the admin, auth,
contenttypes, django_rq and axes apps use these configs and the migrations in
``imager_site/mongo_migrations`` (DESIGN section 3). Our own apps use UUID keys and
need neither.
"""

from axes.apps import AppConfig as AxesConfig
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth.apps import AuthConfig
from django.contrib.contenttypes.apps import ContentTypesConfig
from django_rq.apps import DjangoRqAdminConfig

OBJECT_ID = "django_mongodb_backend.fields.ObjectIdAutoField"


class MongoAdminConfig(AdminConfig):
    default_auto_field = OBJECT_ID


class MongoAuthConfig(AuthConfig):
    default_auto_field = OBJECT_ID


class MongoContentTypesConfig(ContentTypesConfig):
    default_auto_field = OBJECT_ID


class MongoDjangoRQConfig(DjangoRqAdminConfig):
    default_auto_field = OBJECT_ID


class MongoAxesConfig(AxesConfig):
    default_auto_field = OBJECT_ID
