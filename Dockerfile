# modelcache: one image for the controller and the node daemon (TypeScript run by Node 24 directly).
FROM node:24-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY . .
USER 65532
ENTRYPOINT ["node", "bin/modelcache.ts"]
