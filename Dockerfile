# Build: debian bookworm with the -dev packages; the unit tests run as part of the build.
FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      g++ cmake ninja-build libboost-dev libboost-system-dev libboost-program-options-dev \
      libssl-dev libspdlog-dev prometheus-cpp-dev libgtest-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRAINPROXY_TESTS=ON \
 && cmake --build /build --target drainproxy drainproxy-demo-app unit_tests \
 && /build/tests/unit_tests --gtest_brief=1 \
 && strip /build/drainproxy /build/drainproxy-demo-app

# Runtime: only the shared libraries the binary links against, and a non-root user.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libboost-program-options1.74.0 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home drainproxy
COPY --from=build /build/drainproxy /build/drainproxy-demo-app /usr/local/bin/
USER 10001
# 8000: proxied traffic, 9901: admin (/ready /live /metrics /drain /status)
EXPOSE 8000 9901
ENTRYPOINT ["/usr/local/bin/drainproxy"]
