from images.models import db
from servicekit.migrations import run_env

run_env(db.metadata)
