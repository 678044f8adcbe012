#!/bin/bash
# Creates, in MinIO, the images service's bucket, a policy allowing only that bucket, and the
# service's own user with only that policy. With BACKUP_BUCKET set, also the backup bucket with
# its lifecycle rules (BACKUP_LIFECYCLE_FILE: daily/ and weekly/ expire) and the backup user,
# whose policy puts, gets and lists but never deletes. With READONLY_POLICY_NAME set, a user that
# may only read the images bucket (the replication's source). With IMAGES_VERSIONING=true,
# versioning on the images bucket and IMAGES_LIFECYCLE_FILE's expiry of noncurrent versions.
# Safe to run again: each step checks first or replaces what it set.
# Waits up to WAIT_SECONDS for MinIO to answer (it may still be starting). Credentials come
# from files: $CREDENTIALS_DIR/<who>/{user,password}, who = root, service, backup, readonly.
set -o errexit -o nounset -o pipefail

root_user="$(<"$CREDENTIALS_DIR/root/user")"
root_password="$(<"$CREDENTIALS_DIR/root/password")"

alias_name=platform
deadline=$((SECONDS + ${WAIT_SECONDS:-300}))
# Ready means: it answers and accepts the root user (listing buckets); the admin calls below
# then fail loudly on their own if the admin API does not work. The keys go in on stdin: a
# generated secret may start with '-' (which mc would read as a flag), and argv is visible
# to every process on the node.
until last_error="$( (printf '%s\n%s\n' "$root_user" "$root_password" | mc alias set "$alias_name" "$MINIO_URL" \
        && mc ls "$alias_name") 2>&1 >/dev/null)"; do
    if ((SECONDS > deadline)); then
        echo "MinIO at $MINIO_URL did not answer within ${WAIT_SECONDS:-300}s: ${last_error:-no output}" >&2
        exit 1
    fi
    sleep 3
done

# provision_user <who> <policy name> <policy file>: the user of $CREDENTIALS_DIR/<who> with
# exactly that policy (created or replaced).
provision_user() {
    local user password
    user="$(<"$CREDENTIALS_DIR/$1/user")"
    password="$(<"$CREDENTIALS_DIR/$1/password")"
    mc admin policy create "$alias_name" "$2" "$3"
    mc admin user add -- "$alias_name" "$user" "$password"
    if ! mc admin user info "$alias_name" "$user" --json | grep -q "\"policyName\": *\"[^\"]*\\b$2\\b"; then
        mc admin policy attach "$alias_name" "$2" --user "$user"
    fi
    echo "user $user has policy $2"
}

mc mb --ignore-existing "$alias_name/$BUCKET"
provision_user service "$POLICY_NAME" "$POLICY_FILE"

if [[ "${IMAGES_VERSIONING:-false}" == true ]]; then
    mc version enable "$alias_name/$BUCKET"
    # Import replaces the bucket's whole lifecycle configuration: a rerun adds no duplicate rule.
    mc ilm import "$alias_name/$BUCKET" <"$IMAGES_LIFECYCLE_FILE"
fi

if [[ -n "${READONLY_POLICY_NAME:-}" ]]; then
    provision_user readonly "$READONLY_POLICY_NAME" "$READONLY_POLICY_FILE"
fi

if [[ -n "${BACKUP_BUCKET:-}" ]]; then
    mc mb --ignore-existing "$alias_name/$BACKUP_BUCKET"
    mc ilm import "$alias_name/$BACKUP_BUCKET" <"$BACKUP_LIFECYCLE_FILE"
    provision_user backup "$BACKUP_POLICY_NAME" "$BACKUP_POLICY_FILE"
fi
echo "bucket $BUCKET ready"
