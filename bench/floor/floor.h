/* What the two floor relays share: their command line and listening socket. */
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Parses LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1), fills *up and returns a
 * listening socket created with `type_flags` (e.g. SOCK_NONBLOCK); on a usage or
 * socket error prints why and exits. */
static int floor_listen(int argc, char **argv, int type_flags, struct sockaddr_in *up) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
        exit(2);
    }
    int one = 1;
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &at.sin_addr);
    *up = at;
    up->sin_port = htons((uint16_t)atoi(argv[2]));
    int lfd = socket(AF_INET, SOCK_STREAM | type_flags, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&at, sizeof at) != 0 || listen(lfd, 4096) != 0) {
        perror("listen");
        exit(1);
    }
    return lfd;
}

/* Both relays forward small messages at once, as every proxy in the benchmark does. */
static void floor_no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
