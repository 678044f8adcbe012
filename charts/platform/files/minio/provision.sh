#!/bin/bash
# Creates, in MinIO, the images service's bucket, a policy allowing only that bucket, and the
# service's own user with only that policy. Safe to run again: each step checks first.
# Waits up to WAIT_SECONDS for MinIO to answer (it may still be starting). Credentials come
# from files: $CREDENTIALS_DIR/root/{user,password} and $CREDENTIALS_DIR/service/{user,password}.
set -o errexit -o nounset -o pipefail

root_user="$(<"$CREDENTIALS_DIR/root/user")"
root_password="$(<"$CREDENTIALS_DIR/root/password")"
service_user="$(<"$CREDENTIALS_DIR/service/user")"
service_password="$(<"$CREDENTIALS_DIR/service/password")"

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

mc mb --ignore-existing "$alias_name/$BUCKET"
mc admin policy create "$alias_name" "$POLICY_NAME" "$POLICY_FILE"
mc admin user add -- "$alias_name" "$service_user" "$service_password"
if ! mc admin user info "$alias_name" "$service_user" --json | grep -q "\"policyName\": *\"[^\"]*\\b$POLICY_NAME\\b"; then
    mc admin policy attach "$alias_name" "$POLICY_NAME" --user "$service_user"
fi
echo "bucket $BUCKET ready; user $service_user has policy $POLICY_NAME"
