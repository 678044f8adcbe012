"""Backups of the three databases and the images bucket, and their restore.

``platform-backup run`` dumps each database (backups.dump) into the backups bucket;
``platform-backup mirror`` copies the images bucket to a replica; ``platform-restore`` brings
either back (backups.restore). See docs/backups.md and docs/runbooks/Restore.md.
"""
