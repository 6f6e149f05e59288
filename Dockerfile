# syntax=docker/dockerfile:1
# Build a wheel in one stage, install it in a slim runtime as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY guidebot ./guidebot
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 guidebot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=guidebot templates ./templates
COPY --chown=guidebot sop ./sop
USER guidebot
ENV GUIDEBOT_SOP_DIR=/app/sop
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"
CMD ["guidebot", "serve", "--host", "0.0.0.0", "--port", "8080"]
