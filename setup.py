"""Packaging for Siaga, the command center's emergency dispatch server."""

from setuptools import find_packages, setup

setup(
    name="siaga",
    version="0.1.0",
    description="SIP/VoIP emergency dispatch server for a city command center",
    python_requires=">=3.11",
    # Every package below the four top-level ones (a new feature folder is picked up).
    packages=find_packages(include=["pbx", "pbx.*", "dialplans", "dialplans.*", "dispatcher",
                                    "dispatcher.*", "ivr", "ivr.*"]),
    package_data={
        "dispatcher": ["deploy/*.j2"],
        "dispatcher.web": ["templates/*.j2", "static/*", "static/vendor/leaflet/*",
                           "static/vendor/leaflet/images/*"],
        "dispatcher.web.panic": ["static/*"],
        "dispatcher.api": ["openapi.yaml"],
        "dialplans": ["templates/*.j2"],
        "dispatcher.calllog": ["templates/*.j2", "migrations/script.py.mako"],
    },
    install_requires=[
        "Twisted>=23.10",
        "SQLAlchemy>=2.0",
        "alembic>=1.13",
        "Jinja2>=3.1",
        "PyYAML>=6.0",
        "pjsua2-python>=2.15",
        "numpy>=1.26",
        "psycopg[binary]>=3.1",
        "prometheus_client>=0.20",
        "sortedcontainers>=2.4",
        # HTTPS for the console (Twisted's TLS needs pyOpenSSL and service_identity) and
        # the config's check of the certificate and key.
        "pyOpenSSL>=24.0",
        "service_identity>=24.1",
        "cryptography>=42",
        # The panic app's enrolment link as a QR code (terminal and SVG).
        "segno>=1.6",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # `make test` runs the suite in two workers.
            "pytest-xdist>=3.6",
            "pytest-twisted>=1.14",
            "hypothesis>=6",
            "asterisk-ami>=0.1.7",
            "panoramisk>=1.4",
            "ruff>=0.6",
            "selenium>=4.20",
            "schemathesis>=3.30",
            "sipvicious>=0.3.8",
        ],
    },
    entry_points={"console_scripts": ["siaga=dispatcher.cli:main"]},
)
