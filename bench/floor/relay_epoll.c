/* The floor of a user-space TCP proxy on this machine: one thread, edge-triggered
 * epoll, one recv and one send per message, and nothing else (no timers, limits,
 * metrics, logs or drain). The benchmark runs it as "floor-tcp" next to the real
 * proxies, so the CPU per request that any epoll-based proxy must pay to the
 * kernel is measured in the same run, not estimated from a profile.
 *
 *   relay_epoll LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "floor.h"

enum { BUF = 16384, MAX_EVENTS = 256 };

struct side {
    int fd;
    struct side *peer;
    char *buf; /* bytes read from this side that the peer has not taken yet */
    int off, len;
    int hup;     /* epoll saw this side's FIN: read on to it, a short read is not the end */
    int rd_eof;  /* this side sent FIN */
    int wr_shut; /* ... and it was passed on to the peer */
    int dead;
};

static int ep;

static void arm(struct side *s) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) != 0) perror("epoll_ctl");
}

/* A later event of the same epoll batch may name a closed pair, so pairs are
 * freed after the batch. At most one close per event: MAX_EVENTS is enough. */
static struct side *graveyard[MAX_EVENTS];
static int ngrave;

static void close_pair(struct side *s) {
    struct side *p = s->peer;
    if (s->dead) return;
    s->dead = p->dead = 1;
    close(s->fd);
    close(p->fd);
    graveyard[ngrave++] = s < p ? s : p;
}

/* Sends what s holds to its peer: 0 when all is sent, 1 when the peer is full
 * (its EPOLLOUT resumes us), -1 on error. */
static int flush(struct side *s) {
    while (s->off < s->len) {
        ssize_t w = send(s->peer->fd, s->buf + s->off, (size_t)(s->len - s->off), MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN || errno == ENOTCONN ? 1 : -1;
        s->off += (int)w;
    }
    s->off = s->len = 0;
    return 0;
}

/* Moves bytes from s to its peer until s is drained; -1: close the pair. A read
 * shorter than the buffer proves the receive queue empty, so no read ends in
 * EAGAIN on the small-message path; unless a FIN came with the data, which only
 * the next read sees and no later edge announces. */
static int pump(struct side *s) {
    for (;;) {
        if (s->len) {
            int f = flush(s);
            if (f) return f < 0 ? -1 : 0;
        }
        if (s->rd_eof) break;
        ssize_t n = recv(s->fd, s->buf, BUF, 0);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        if (n == 0) {
            s->rd_eof = 1;
            break;
        }
        s->len = (int)n;
        if (n < BUF && !s->hup) {
            int f = flush(s);
            return f < 0 ? -1 : 0;
        }
    }
    if (!s->wr_shut) {
        shutdown(s->peer->fd, SHUT_WR);
        s->wr_shut = 1;
    }
    return s->peer->wr_shut ? -1 : 0;
}

static void accept_all(int lfd, const struct sockaddr_in *up) {
    int c;
    while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct side *pair = calloc(2, sizeof *pair);
        char *bufs = malloc(2 * BUF);
        if (u < 0 || !pair || !bufs ||
            (connect(u, (const struct sockaddr *)up, sizeof *up) != 0 && errno != EINPROGRESS)) {
            perror("upstream");
            close(c);
            if (u >= 0) close(u);
            free(pair);
            free(bufs);
            continue;
        }
        floor_no_delay(c);
        floor_no_delay(u);
        pair[0] = (struct side){.fd = c, .peer = &pair[1], .buf = bufs};
        pair[1] = (struct side){.fd = u, .peer = &pair[0], .buf = bufs + BUF};
        arm(&pair[0]);
        arm(&pair[1]);
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in up;
    int lfd = floor_listen(argc, argv, SOCK_NONBLOCK, &up);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct side *s = evs[i].data.ptr;
            if (!s) {
                accept_all(lfd, &up);
                continue;
            }
            if (s->dead) continue;
            int r = 0;
            if (evs[i].events & (EPOLLRDHUP | EPOLLHUP)) s->hup = 1;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) r = pump(s);
            /* s can take more: resume the peer's bytes that were waiting for it */
            if (r == 0 && (evs[i].events & EPOLLOUT) && s->peer->len) r = pump(s->peer);
            if (r < 0 || (evs[i].events & EPOLLERR)) close_pair(s);
        }
        while (ngrave) {
            struct side *g = graveyard[--ngrave];
            free(g[0].buf);
            free(g);
        }
    }
}
