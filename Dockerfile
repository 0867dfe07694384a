# docker build -t rhost . && docker run -e KEYS=<secret> -p 7000:7000 rhost
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src src
COPY bin bin
RUN npm ci --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    RHOST_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist/src dist/src
COPY bin bin
USER node
EXPOSE 7000
# Listens on $PORT when set (a PaaS), else 7000, on all interfaces: KEYS (or
# KEYS_NAME) must be set, or the tunnel refuses to start.
CMD ["node", "bin/rhost.js", "tunnel"]
