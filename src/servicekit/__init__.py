"""What every service needs, written once: configuration, logging, errors, health, metrics.

A service builds its app with :func:`servicekit.app.create_service_app` and adds only its
own blueprints, models and readiness checks.
"""
