# Multi-stage image for every service of the pipeline (the command picks the service).
# Build: docker build -t bybit-pipeline .
# The production image adds @tensorflow/tfjs-node (native CPU backend); the model code uses it when
# it is installed and falls back to the pure @tensorflow/tfjs backend otherwise.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
# patches/: npm ci's postinstall applies them (patch-package); the runtime needs the patched kafkajs.
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --ignore-scripts=false \
 && (npm install --no-save @tensorflow/tfjs-node@4.22.0 || echo "tfjs-node unavailable: pure tfjs backend will be used")

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci
COPY . .
# Type-check everything (tests included), then compile the runtime code to dist/ (tsconfig.build.json,
# with the .sql/.avsc/.csv files the modules read next to them).
RUN npm run build && npm run build:dist

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# The compiled form (dist/, built above from the type-checked sources) with plain node: no tsx loader,
# whose loader thread (its own V8 isolate and esbuild) costs ~30 MB RSS per process on Node 20.
# package.json stays for "type": "module" (dist/ is ES modules).
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Non-root: the node image's unprivileged user.
USER node
EXPOSE 9300
HEALTHCHECK --interval=10s --timeout=3s --retries=6 CMD node -e "fetch('http://127.0.0.1:'+(process.env.ADMIN_PORT||9300)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Heap flags, measured (docs/performance.md, docs/model.md): an 8 MB young generation (semi-space)
# and a 256 MB old-space cap keep the order manager's peak RSS well under 200 MB under load instead of
# ~300 MB with V8's defaults (it otherwise grows the heap long before it collects); 8 MB rather than
# 4 spends a little less CPU on scavenges (the order manager's CPU per signal, means of 3-4 probe runs:
# 15.9 -> 15.7 ms at 50/s, 10.4 -> 9.6 ms at 200/s, inside the runs' spread) for ~7 MB of RSS; 16 MB
# cost ~27 MB for little more. The model service's heap stays at ~75 MB through a 100k-sample
# retrain, so the cap is only a guard there.
ENTRYPOINT ["node", "--max-semi-space-size=8", "--max-old-space-size=256", "dist/stack/service-main.js"]
CMD ["order-manager"]
