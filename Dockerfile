# The LiteLLM proxy with solaris_hooks installed, for docker-compose.yml (service litellm).
#
# litellm-database is LiteLLM's official image that ships Prisma's engines, which LiteLLM
# needs for its own tables when DATABASE_URL is set.
# The tag MUST match the `litellm` version pinned in constraints.txt (litellm==1.108.7):
# that is the version solaris_hooks is tested against; tests/test_deploy.py checks it.
FROM ghcr.io/berriai/litellm-database:main-v1.108.7

USER root

# Only what `pip install .` needs (setuptools reads README.md as the long description);
# the templates and migrations are files inside the package (tests/test_packaging.py
# builds a wheel from exactly this copy set and renders from it).
COPY pyproject.toml README.md /opt/solaris-hooks/
COPY solaris_hooks /opt/solaris-hooks/solaris_hooks

# pip keeps the image's litellm (it satisfies our range) and adds what is missing
# (psycopg, pgserver, ...). PIP_BREAK_SYSTEM_PACKAGES: the image installs LiteLLM into the
# system Python too; harmless where that Python is not marked externally managed.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 pip install --no-cache-dir /opt/solaris-hooks \
    && rm -rf /opt/solaris-hooks \
    && solaris --help >/dev/null

# The base image's entrypoint (docker/prod_entrypoint.sh, relative to /app) starts LiteLLM
# with the arguments given as `command` in docker-compose.yml.
WORKDIR /app
