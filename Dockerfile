# Remediator: `remediator serve` as a non-root user on a slim Python base.
# Build:  docker build -t remediator .
# Run:    docker run -p 9095:9095 -v ./remediation.yml:/etc/remediator/remediation.yml remediator

FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY receiver ./receiver
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip download --no-cache-dir --dest /wheels --only-binary=:all: "/wheels/remediator-0.1.0-py3-none-any.whl[postgres,kubernetes]"

# The demo service under supervisord, for docker-compose.yml (`target: demo`).
FROM python:3.11.10-slim-bookworm AS demo
RUN pip install --no-cache-dir "prometheus-client==0.21.1" "supervisor==4.2.5"
COPY examples/demo_service.py /opt/demo/demo_service.py
COPY deploy/compose/supervisord.conf /etc/supervisord.conf
RUN mkdir -p /var/lib/demo/state
EXPOSE 8100 8101 8102 9001
CMD ["supervisord", "-c", "/etc/supervisord.conf"]

# Remediator itself: the default target.
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 remediator \
    && useradd --system --uid 10001 --gid remediator --home-dir /var/lib/remediator \
       --create-home --shell /usr/sbin/nologin remediator
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "remediator[postgres,kubernetes]==0.1.0" \
    && rm -rf /wheels
COPY examples/remediation.yml /etc/remediator/remediation.yml
COPY examples/secrets /etc/remediator/secrets
USER 10001:10001
WORKDIR /var/lib/remediator
EXPOSE 9095
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9095/-/healthy', timeout=2).status != 200)"]
ENTRYPOINT ["remediator"]
CMD ["serve", "--config", "/etc/remediator/remediation.yml", "--listen", "0.0.0.0:9095", "--store", "sqlite:////var/lib/remediator/journal.db", "--log-format", "json"]
