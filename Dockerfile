# Ancla service image: API + anchor worker. Multi-stage: wheels are built in
# the first stage; the runtime stage has no compiler and runs as a non-root user.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY ledger ./ledger
COPY app ./app
# Installed inside the wheel as app.migrations (setup.py), for `ancla db upgrade`.
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ancla
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /app
USER ancla
ENV ANCLA_ENVIRONMENT=production \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# Migrations first (idempotent; they ship in the wheel), then the API with its
# anchor worker; run `ancla serve --no-worker` replicas plus `ancla worker`
# processes to scale.
CMD ["sh", "-c", "ancla db upgrade && exec ancla serve --host 0.0.0.0 --port 8000"]
