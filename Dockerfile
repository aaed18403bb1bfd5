# drainproxy image. Multi-stage: a build stage with the toolchain and -dev packages, and a runtime
# stage with only the shared libraries the binaries link against.
# Builds with docker, or daemonless with buildah: tests/container/build_and_run.sh.

# Build: debian bookworm with the -dev packages; the unit tests run as part of the build.
# python3: tests/CMakeLists.txt looks for the interpreter (integration tests), even though only the
# unit tests run here. ccache + a cache mount: a rebuild after a source change recompiles only
# what changed (CMakeLists.txt picks ccache up by itself) instead of everything on 2 cores.
FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      g++ cmake ninja-build ccache libboost-dev libboost-system-dev libboost-program-options-dev \
      libssl-dev libspdlog-dev prometheus-cpp-dev libgtest-dev liburing-dev python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/ccache,id=drainproxy-ccache \
    export CCACHE_DIR=/ccache CCACHE_MAXSIZE=2G \
 && cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRAINPROXY_TESTS=ON \
 && cmake --build /build --target drainproxy drainproxy-demo-app unit_tests \
 && { ccache --show-stats | grep -Ei 'hits|misses' || true; } \
 && /build/tests/unit_tests --gtest_brief=1 \
 && strip /build/drainproxy /build/drainproxy-demo-app \
 && echo "shared libraries (the runtime stage installs their packages):" \
 && ldd /build/drainproxy /build/drainproxy-demo-app

# Runtime: only the shared libraries the binaries link against (ldd above: boost program_options,
# spdlog, fmt, prometheus-cpp core, liburing; libstdc++/libgcc/libc are in the base), and a non-root user.
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="drainproxy" \
      org.opencontainers.image.description="drainproxy: a sidecar proxy that drains connections on SIGTERM"
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libboost-program-options1.74.0 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 liburing2 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 10001 drainproxy \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init --home-dir /nonexistent \
      --shell /usr/sbin/nologin drainproxy
COPY --from=build /build/drainproxy /build/drainproxy-demo-app /usr/local/bin/
# Fails the build when a library the binaries need is missing from this stage.
RUN ! ldd /usr/local/bin/drainproxy /usr/local/bin/drainproxy-demo-app | grep 'not found'
USER 10001:10001
# 8000: proxied traffic (--listen), 9901: admin (--admin: /ready /live /metrics /drain /status).
EXPOSE 8000 9901
ENTRYPOINT ["/usr/local/bin/drainproxy"]
