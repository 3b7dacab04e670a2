# sstream-proxy in a container.
#
#   docker build -t sstream-proxy .
#   docker run -d --name sstream-proxy -p 8080:8080 \
#     -v sstream-proxy-data:/var/lib/sstream-proxy \
#     -v /usr/share/keyrings/ubuntu-cloudimage-keyring.gpg:/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg:ro \
#     -v "$PWD/config.json:/etc/sstream-proxy/config.json:ro" \
#     sstream-proxy
#
# Without a mounted config.json the image uses the built-in default selection
# with its data in /var/lib/sstream-proxy. Other commands run the same way:
#   docker exec sstream-proxy node dist/cli.js key --armor
#   docker run --rm -v sstream-proxy-data:/var/lib/sstream-proxy sstream-proxy gc --dry-run

FROM node:20-slim AS build
WORKDIR /app
# better-sqlite3 downloads a prebuilt binary; the toolchain is the fallback
# for platforms without one.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-slim
ENV NODE_ENV=production \
    SSTREAM_PROXY_CONFIG=/etc/sstream-proxy/config.json
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config.schema.json config.example.json ./
# The default configuration is the built-in one with the data in the volume;
# mount your own at the same path to replace it.
RUN mkdir -p /etc/sstream-proxy /var/lib/sstream-proxy \
 && node --input-type=module -e "import { writeFileSync } from 'node:fs'; import { BUILT_IN_CONFIG } from '/app/dist/config/defaults.js'; writeFileSync('/etc/sstream-proxy/config.json', JSON.stringify({ dataDir: '/var/lib/sstream-proxy', ...BUILT_IN_CONFIG }, null, 2) + '\n')" \
 && chown node:node /var/lib/sstream-proxy
# The node image's unprivileged user (uid 1000); the volume is created owned by it.
USER node
VOLUME ["/var/lib/sstream-proxy"]
EXPOSE 8080
# /health does no work and is not logged: healthy while the server answers. A config.json
# listening on another port than 8080 sets SSTREAM_PROXY_PORT to match.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.SSTREAM_PROXY_PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# serve stops cleanly on SIGTERM and lets transfers run up to 10 s: stop with
# `docker stop -t 15` so they are not cut by SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve"]
