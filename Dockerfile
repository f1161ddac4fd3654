# The LiteLLM proxy with solaris_hooks installed, for docker-compose.yml (service litellm).
#
# litellm-database is LiteLLM's official image that ships Prisma's engines, which LiteLLM
# needs for its own tables when DATABASE_URL is set.
# The tag MUST match the `litellm` version pinned in constraints.txt (litellm==1.108.7):
# that is the version solaris_hooks is tested against; tests/deploy/test_deploy.py checks it.
FROM ghcr.io/berriai/litellm-database:main-v1.108.7

USER root

# Only what `pip install .` needs (setuptools reads README.md as the long description);
# the templates and migrations are files inside the package (tests/deploy/test_packaging.py
# builds a wheel from exactly this copy set, installs it and renders from it).
COPY pyproject.toml README.md /opt/solaris-hooks/
COPY solaris_hooks /opt/solaris-hooks/solaris_hooks

# pip keeps the image's litellm (it satisfies our range) and adds what is missing
# (psycopg, ...). No `[embedded]` extra: the image uses the compose file's Postgres, never
# an embedded one. PIP_BREAK_SYSTEM_PACKAGES: the image installs LiteLLM into the system
# Python too; harmless where that Python is not marked externally managed.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 pip install --no-cache-dir /opt/solaris-hooks \
    && rm -rf /opt/solaris-hooks \
    && solaris --help >/dev/null

# The proxy runs as `solaris` (uid 10001), not as root. What it writes belongs to it:
# - /app/.solaris, where our spool lives (compose mounts the volume solaris-spool on
#   /app/.solaris/spool; a new volume takes the owner of the directory it is mounted on);
# - what LiteLLM writes at start, as in LiteLLM's own non-root image: Prisma's generated
#   client and engines (generated again below, as the user, from a copy of root's Prisma
#   cache in its home, so nothing is downloaded when that cache is complete), the
#   migrations folder of litellm_proxy_extras, and the copies of its UI and assets that
#   LITELLM_NON_ROOT moves to /var/lib/litellm.
# The base image is Wolfi (busybox adduser); useradd is there on Debian-based ones.
ENV HOME=/home/solaris \
    XDG_CACHE_HOME=/home/solaris/.cache \
    PRISMA_BINARY_CACHE_DIR=/home/solaris/.cache/prisma-python/binaries \
    LITELLM_NON_ROOT=true
RUN (useradd --uid 10001 --user-group --create-home --home-dir /home/solaris solaris 2>/dev/null \
        || adduser -D -u 10001 -h /home/solaris solaris) \
    && mkdir -p /app/.solaris/spool /var/lib/litellm/ui /var/lib/litellm/assets /home/solaris/.cache \
    && if [ -d /root/.cache/prisma-python ]; then cp -a /root/.cache/prisma-python /home/solaris/.cache/; fi \
    && chown -R solaris:solaris /home/solaris /app/.solaris /var/lib/litellm \
    && for package in prisma litellm_proxy_extras; do \
        chown -R solaris:solaris "$(python -c "import os, $package; print(os.path.dirname($package.__file__))")"; \
    done

# The base image's entrypoint (docker/prod_entrypoint.sh, relative to /app) starts LiteLLM
# with the arguments given as `command` in docker-compose.yml.
WORKDIR /app
USER solaris
RUN prisma generate
