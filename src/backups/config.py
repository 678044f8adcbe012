"""The backup and restore commands' settings (environment variables, as the chart sets them).

The PostgreSQL connection itself comes from libpq's own variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGSSLMODE, PGSSLROOTCERT), which psycopg2 reads without our help.
"""

from __future__ import annotations

import dataclasses

from servicekit.config import setting

# Which service's migrations describe each database.
DATABASE_SERVICES = {"auth_db": "auth", "api_db": "api", "image_db": "images"}
SERVICE_USERS = {"auth": "auth_user", "api": "api_user", "images": "image_user"}
PASSWORD_VARIABLES = {"auth": "AUTH_DB_PASSWORD", "api": "API_DB_PASSWORD", "images": "IMAGES_DB_PASSWORD"}


@dataclasses.dataclass(frozen=True)
class BucketSettings:
    """Where the backups are kept."""

    databases: str = setting(
        "BACKUP_DATABASES",
        "auth_db,api_db,image_db",
        doc="comma-separated databases to back up or restore, each one of auth_db, api_db, image_db",
    )
    s3_endpoint_url: str = setting(
        "BACKUP_S3_ENDPOINT", "", doc="S3 endpoint of the backups bucket; empty for AWS S3 itself"
    )
    s3_region: str = setting("BACKUP_S3_REGION", "us-east-1", doc="region the requests are signed for")
    s3_bucket: str = setting("BACKUP_S3_BUCKET", "backups", doc="bucket the backups are written to")
    s3_access_key_id: str = setting(
        "BACKUP_S3_ACCESS_KEY_ID",
        "",
        doc="access key of the backup user (put, get and list on the bucket; no delete)",
        secret=True,
    )
    s3_secret_access_key: str = setting(
        "BACKUP_S3_SECRET_ACCESS_KEY", "", doc="secret key of the backup user", secret=True
    )

    def database_names(self) -> list[str]:
        names = [name.strip() for name in self.databases.split(",") if name.strip()]
        unknown = sorted(set(names) - set(DATABASE_SERVICES))
        if unknown:
            raise ValueError(f"BACKUP_DATABASES names unknown databases: {', '.join(unknown)}")
        return names


@dataclasses.dataclass(frozen=True)
class BackupSettings(BucketSettings):
    weekly_weekday: int = setting(
        "BACKUP_WEEKLY_WEEKDAY",
        6,
        doc="day of the week (0 Monday to 6 Sunday, UTC) whose backup is also kept under weekly/",
        minimum=0,
        maximum=6,
    )
    pushgateway_url: str = setting(
        "BACKUP_PUSHGATEWAY_URL",
        "",
        doc="Prometheus Pushgateway the run's outcome is pushed to (backup_last_success_timestamp_seconds,"
        " backup_duration_seconds, backup_size_bytes); nothing is pushed when empty",
    )


@dataclasses.dataclass(frozen=True)
class ImagesBucketSettings:
    """The images bucket: the mirror reads it (read-only credentials), a restore writes it."""

    endpoint_url: str = setting("IMAGES_S3_ENDPOINT", "", doc="S3 endpoint of the images bucket")
    bucket: str = setting("IMAGES_S3_BUCKET", "images", doc="the images bucket")
    access_key_id: str = setting("IMAGES_S3_ACCESS_KEY_ID", "", doc="access key", secret=True)
    secret_access_key: str = setting("IMAGES_S3_SECRET_ACCESS_KEY", "", doc="secret key", secret=True)
    region: str = setting("IMAGES_S3_REGION", "us-east-1", doc="region the requests are signed for")


@dataclasses.dataclass(frozen=True)
class ReplicaBucketSettings:
    """The replica of the images bucket, in another place (another MinIO, another region)."""

    endpoint_url: str = setting("REPLICA_S3_ENDPOINT", "", doc="S3 endpoint of the replica")
    bucket: str = setting("REPLICA_S3_BUCKET", "images-replica", doc="the replica bucket")
    access_key_id: str = setting("REPLICA_S3_ACCESS_KEY_ID", "", doc="access key", secret=True)
    secret_access_key: str = setting("REPLICA_S3_SECRET_ACCESS_KEY", "", doc="secret key", secret=True)
    region: str = setting("REPLICA_S3_REGION", "us-east-1", doc="region the requests are signed for")


@dataclasses.dataclass(frozen=True)
class RestoreSettings(BucketSettings):
    """`platform-restore databases` and `bucket`: it creates databases and roles, and gives each
    role the password its service has (the chart's Secrets)."""

    admin_url: str = setting(
        "RESTORE_ADMIN_URL",
        "",
        doc="libpq URL of a role that may create databases and roles; empty to use PGHOST, PGUSER, ...",
        secret=True,
    )
    auth_db_password: str = setting("AUTH_DB_PASSWORD", "", doc="auth_user's password", secret=True)
    api_db_password: str = setting("API_DB_PASSWORD", "", doc="api_user's password", secret=True)
    images_db_password: str = setting("IMAGES_DB_PASSWORD", "", doc="image_user's password", secret=True)
    images_database_url: str = setting(
        "IMAGES_DATABASE_URL",
        "",
        doc="image_db as the images service reaches it (SQLAlchemy URL), for the reconcile after"
        " `bucket`; empty to use DATABASE_URL",
        secret=True,
    )

    def password(self, service: str) -> str:
        return {
            "auth": self.auth_db_password,
            "api": self.api_db_password,
            "images": self.images_db_password,
        }[service]
