"""The whole system on one machine, for developers and for the integration tests.

Real servers on loopback ports: PostgreSQL (Debian's package, run as an unprivileged user),
MinIO (built by ci/install.sh into .tools/bin) and the three services under gunicorn.
Nothing here is shipped in the service images.
"""
