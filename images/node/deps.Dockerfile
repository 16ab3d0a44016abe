# Offline production dependencies: the node_modules that `npm ci` made on this machine, pruned to
# production by scripts/build-offline-images.sh, under /app like the `deps` stage of
# Dockerfile.node (which takes this image as DEPS_IMAGE and then runs no npm at all).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
WORKDIR /app
COPY node_modules ./node_modules
