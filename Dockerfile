# mailfix: one process serving Slack (/slack/events) and Teams (/api/messages).
# Slim and non-root; configuration comes only from MAILFIX_* environment variables
# (docs/configuration.md). Build: docker build -t mailfix .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY checks checks
COPY dialogs dialogs
COPY cards cards
COPY bot bot
COPY sandbox sandbox
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/mailfix --create-home mailfix
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER mailfix
WORKDIR /var/lib/mailfix
ENV MAILFIX_HOST=0.0.0.0 \
    MAILFIX_PORT=3978 \
    MAILFIX_STATE_DIR=/var/lib/mailfix \
    PYTHONUNBUFFERED=1
EXPOSE 3978
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3978/readyz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["mailfix"]
CMD ["serve"]
