# Multi-stage image for every service of the pipeline (the command picks the service).
# Build: docker build -t bybit-pipeline .
# The production image adds @tensorflow/tfjs-node (native CPU backend); the model code uses it when
# it is installed and falls back to the pure @tensorflow/tfjs backend otherwise.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts=false \
 && (npm install --no-save @tensorflow/tfjs-node@4.22.0 || echo "tfjs-node unavailable: pure tfjs backend will be used")

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# tsx runs the TypeScript sources directly (no separate emit step to drift from what was type-checked).
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/node_modules/tsx ./node_modules/tsx
COPY --from=build /app/node_modules/esbuild ./node_modules/esbuild
COPY --from=build /app/node_modules/@esbuild ./node_modules/@esbuild
COPY --from=build /app/node_modules/get-tsconfig ./node_modules/get-tsconfig
COPY --from=build /app/node_modules/resolve-pkg-maps ./node_modules/resolve-pkg-maps
COPY package.json tsconfig.json ./
COPY runtime ./runtime
COPY pipelines ./pipelines
COPY connectors ./connectors
COPY schemas ./schemas
COPY sql ./sql
COPY model ./model
COPY sim ./sim
COPY stack ./stack
COPY cli ./cli
# Non-root: the node image's unprivileged user.
USER node
EXPOSE 9300
HEALTHCHECK --interval=10s --timeout=3s --retries=6 CMD node -e "fetch('http://127.0.0.1:'+(process.env.ADMIN_PORT||9300)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Heap flags, measured (docs/performance.md, docs/model.md): a 4 MB young generation and a 256 MB
# old-space cap keep the order manager's peak RSS at ~220 MB under a 1,000 signals/s burst instead of
# ~300 MB (V8 otherwise grows the heap long before it collects); the model service's heap stays at
# ~75 MB through a 100k-sample retrain, so the cap is only a guard there.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--max-old-space-size=256", "--import", "tsx", "stack/service-main.ts"]
CMD ["order-manager"]
